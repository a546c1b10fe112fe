package main

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// k8sObject is the part of a Kubernetes object the checks below read.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec k8sPodSpec `yaml:"spec"`
		} `yaml:"template"`
		// NetworkPolicy
		PodSelector k8sSelector `yaml:"podSelector"`
		Ingress     []struct {
			From []struct {
				NamespaceSelector *k8sSelector `yaml:"namespaceSelector"`
				PodSelector       *k8sSelector `yaml:"podSelector"`
			} `yaml:"from"`
			Ports []struct {
				Port string `yaml:"port"`
			} `yaml:"ports"`
		} `yaml:"ingress"`
		ForwardAuth struct {
			Address             string   `yaml:"address"`
			TrustForwardHeader  bool     `yaml:"trustForwardHeader"`
			AuthResponseHeaders []string `yaml:"authResponseHeaders"`
		} `yaml:"forwardAuth"`
	} `yaml:"spec"`
}

type k8sSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type k8sPodSpec struct {
	SecurityContext struct {
		RunAsNonRoot bool `yaml:"runAsNonRoot"`
	} `yaml:"securityContext"`
	AutomountServiceAccountToken *bool `yaml:"automountServiceAccountToken"`
	EnableServiceLinks           *bool `yaml:"enableServiceLinks"`
	TopologySpreadConstraints    []struct {
		TopologyKey   string      `yaml:"topologyKey"`
		LabelSelector k8sSelector `yaml:"labelSelector"`
	} `yaml:"topologySpreadConstraints"`
	Volumes []struct {
		ConfigMap struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
	} `yaml:"volumes"`
	InitContainers []k8sContainer `yaml:"initContainers"`
	Containers     []k8sContainer `yaml:"containers"`
}

type k8sContainer struct {
	Args []string `yaml:"args"`
	Env  []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom struct {
			SecretKeyRef struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	LivenessProbe  k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe k8sProbe `yaml:"readinessProbe"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
	} `yaml:"httpGet"`
}

// TestKubernetesManifests checks deploy/k8s: probes on /health and /ready,
// non-root pods without a service-account token, spread over nodes and
// zones, secrets only by reference to the keys the README's `kubectl create
// secret` line creates, migrations in an init container (ordered before
// authd starts; no Job to order or re-apply), a NetworkPolicy that keeps
// the metrics port private, a ForwardAuth middleware on /verify copying only
// authd's identity headers, and the configuration as a generated ConfigMap
// (its name hashes its content, so a change rolls the pods) that is a valid
// authd configuration with the Deployment's environment.
func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	dir := "../../deploy/k8s"
	kust, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var kustomization struct {
		Resources          []string `yaml:"resources"`
		ConfigMapGenerator []struct {
			Name  string   `yaml:"name"`
			Files []string `yaml:"files"`
		} `yaml:"configMapGenerator"`
	}
	if err := yaml.Unmarshal(kust, &kustomization); err != nil {
		t.Fatal(err)
	}
	// The keys `kubectl create secret generic authd` creates, as documented.
	secretKeys := map[string]bool{}
	for _, m := range regexp.MustCompile(`--from-literal=([a-z-]+)=`).FindAllSubmatch(kust, -1) {
		secretKeys[string(m[1])] = true
	}

	objs := map[string]k8sObject{}
	for _, f := range append(slices.Clone(kustomization.Resources), "traefik-mcp.yaml") {
		raw, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		for {
			var o k8sObject
			if err := dec.Decode(&o); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			objs[o.Kind+"/"+o.Metadata.Name] = o
		}
	}

	containerEnv := func(what string, c k8sContainer) map[string]string {
		t.Helper()
		env := map[string]string{}
		for _, e := range c.Env {
			ref := e.ValueFrom.SecretKeyRef
			switch {
			case ref.Name != "":
				if ref.Name != "authd" || !secretKeys[ref.Key] {
					t.Errorf("%s: %s refers to secret %s/%s, not created by the documented command", what, e.Name, ref.Name, ref.Key)
				}
				env[e.Name] = "from-secret-" + strings.Repeat("x", 40)
				if ref.Key == "database-url" {
					env[e.Name] = "postgres://authd:secret@postgres:5432/authd?sslmode=require"
				}
			default:
				env[e.Name] = e.Value
			}
		}
		return env
	}

	dep, ok := objs["Deployment/authd"]
	if !ok {
		t.Fatalf("no Deployment/authd among %v", keysOf(objs))
	}
	pod := dep.Spec.Template.Spec
	podLabels := dep.Spec.Template.Metadata.Labels
	if !pod.SecurityContext.RunAsNonRoot || len(pod.Containers) != 1 {
		t.Fatalf("Deployment: want one container in a runAsNonRoot pod")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("Deployment: automountServiceAccountToken must be false (authd never calls the Kubernetes API)")
	}
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Error("Deployment: enableServiceLinks must be false (Kubernetes would add AUTHD_SERVICE_HOST, AUTHD_PORT… for the Services)")
	}
	c := pod.Containers[0]
	env := containerEnv("Deployment", c)
	if c.LivenessProbe.HTTPGet.Path != "/health" || c.ReadinessProbe.HTTPGet.Path != "/ready" {
		t.Errorf("probes: liveness %q, readiness %q", c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path)
	}
	if env["AUTHD_DATABASE_URL"] == "" || env["AUTHD_KEYS_ENCRYPTION_SECRET"] == "" {
		t.Errorf("deployment must take the database URL and key secret from the Secret: %v", env)
	}
	spread := map[string]bool{}
	for _, tsc := range pod.TopologySpreadConstraints {
		if !maps.Equal(tsc.LabelSelector.MatchLabels, podLabels) {
			t.Errorf("topology spread over %s selects %v, not the pods (%v)", tsc.TopologyKey, tsc.LabelSelector.MatchLabels, podLabels)
		}
		spread[tsc.TopologyKey] = true
	}
	if !spread["kubernetes.io/hostname"] || !spread["topology.kubernetes.io/zone"] {
		t.Errorf("replicas must be spread over nodes and zones: %v", spread)
	}

	// Migrations: an init container of the authd pod, `authd migrate up`
	// with the database URL from the Secret; no separate Job.
	if len(pod.InitContainers) != 1 || !slices.Equal(pod.InitContainers[0].Args, []string{"migrate", "up"}) {
		t.Errorf("the pod must migrate in an init container running `authd migrate up`: %+v", pod.InitContainers)
	} else if ienv := containerEnv("migrate init container", pod.InitContainers[0]); ienv["AUTHD_DATABASE_URL"] == "" {
		t.Error("migrate init container has no AUTHD_DATABASE_URL")
	}
	for k := range objs {
		if strings.HasPrefix(k, "Job/") {
			t.Errorf("%s: migrations run in the init container; a Job is applied alongside the Deployment, unordered, and immutable on re-apply", k)
		}
	}

	// The metrics port is reachable only from the monitoring namespace.
	np, ok := objs["NetworkPolicy/authd"]
	if !ok {
		t.Fatal("no NetworkPolicy/authd")
	}
	if !maps.Equal(np.Spec.PodSelector.MatchLabels, podLabels) {
		t.Errorf("NetworkPolicy selects %v, not the pods (%v)", np.Spec.PodSelector.MatchLabels, podLabels)
	}
	metricsRules := 0
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port == "metrics" || p.Port == "9090" {
				metricsRules++
				if len(rule.From) == 0 {
					t.Error("NetworkPolicy opens the metrics port to everyone")
				}
			}
		}
		if len(rule.Ports) == 0 {
			t.Error("NetworkPolicy has a rule for every port (metrics included)")
		}
	}
	if metricsRules != 1 {
		t.Errorf("NetworkPolicy: want one rule for the metrics port, got %d", metricsRules)
	}

	mw, ok := objs["Middleware/authd-verify"]
	if !ok {
		t.Fatal("no Traefik ForwardAuth middleware")
	}
	fa := mw.Spec.ForwardAuth
	if !strings.HasSuffix(fa.Address, "/verify") || fa.TrustForwardHeader || len(fa.AuthResponseHeaders) == 0 {
		t.Errorf("forwardAuth: %+v", fa)
	}
	for _, h := range fa.AuthResponseHeaders {
		if !strings.HasPrefix(h, "X-Auth-") {
			t.Errorf("forwardAuth copies %s, which authd does not set", h)
		}
	}

	// The configuration is a generated ConfigMap mounted by the pods, and
	// valid with the Deployment's environment.
	if _, fixed := objs["ConfigMap/authd"]; fixed {
		t.Error("ConfigMap/authd has a fixed name: a change would not roll the pods; use configMapGenerator")
	}
	if len(kustomization.ConfigMapGenerator) != 1 || kustomization.ConfigMapGenerator[0].Name != "authd" ||
		!slices.Equal(kustomization.ConfigMapGenerator[0].Files, []string{"authd.yaml"}) {
		t.Fatalf("kustomization must generate ConfigMap authd from authd.yaml: %+v", kustomization.ConfigMapGenerator)
	}
	mounted := false
	for _, v := range pod.Volumes {
		mounted = mounted || v.ConfigMap.Name == "authd"
	}
	if !mounted || !slices.Contains(c.Args, "/etc/authd/authd.yaml") {
		t.Errorf("the pod must mount the generated ConfigMap authd and read /etc/authd/authd.yaml: %+v %v", pod.Volumes, c.Args)
	}
	cfg, err := loadConfig(flagsFor(t, "--config", filepath.Join(dir, "authd.yaml")), envOf(env))
	if err != nil {
		t.Fatalf("k8s configuration invalid: %v", err)
	}
	if cfg.Metrics.Listen == "" || cfg.Dev || len(cfg.Upstreams) == 0 {
		t.Errorf("k8s configuration: metrics listener, no dev, an upstream expected: %+v", cfg)
	}
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
