package main

import (
	"bytes"
	"errors"
	"io"
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
			Spec k8sPodSpec `yaml:"spec"`
		} `yaml:"template"`
		ForwardAuth struct {
			Address             string   `yaml:"address"`
			TrustForwardHeader  bool     `yaml:"trustForwardHeader"`
			AuthResponseHeaders []string `yaml:"authResponseHeaders"`
		} `yaml:"forwardAuth"`
	} `yaml:"spec"`
}

type k8sPodSpec struct {
	SecurityContext struct {
		RunAsNonRoot bool `yaml:"runAsNonRoot"`
	} `yaml:"securityContext"`
	Containers []struct {
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
	} `yaml:"containers"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
	} `yaml:"httpGet"`
}

// TestKubernetesManifests checks deploy/k8s: probes on /health and /ready,
// non-root pods, secrets only by reference to the keys the README's
// `kubectl create secret` line creates, a migration Job, a ForwardAuth
// middleware on /verify copying only authd's identity headers, and a
// ConfigMap that is a valid authd configuration with the Deployment's
// environment.
func TestKubernetesManifests(t *testing.T) {
	dir := "../../deploy/k8s"
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", dir, err)
	}
	kust, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The keys `kubectl create secret generic authd` creates, as documented.
	secretKeys := map[string]bool{}
	for _, m := range regexp.MustCompile(`--from-literal=([a-z-]+)=`).FindAllSubmatch(kust, -1) {
		secretKeys[string(m[1])] = true
	}

	objs := map[string]k8sObject{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
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

	checkPod := func(what string, spec k8sPodSpec) map[string]string {
		t.Helper()
		if !spec.SecurityContext.RunAsNonRoot || len(spec.Containers) != 1 {
			t.Errorf("%s: want one container in a runAsNonRoot pod", what)
			return nil
		}
		env := map[string]string{}
		for _, e := range spec.Containers[0].Env {
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
	c := dep.Spec.Template.Spec.Containers
	env := checkPod("Deployment", dep.Spec.Template.Spec)
	if len(c) == 1 && (c[0].LivenessProbe.HTTPGet.Path != "/health" || c[0].ReadinessProbe.HTTPGet.Path != "/ready") {
		t.Errorf("probes: liveness %q, readiness %q", c[0].LivenessProbe.HTTPGet.Path, c[0].ReadinessProbe.HTTPGet.Path)
	}
	if env["AUTHD_DATABASE_URL"] == "" || env["AUTHD_KEYS_ENCRYPTION_SECRET"] == "" {
		t.Errorf("deployment must take the database URL and key secret from the Secret: %v", env)
	}

	job, ok := objs["Job/authd-migrate"]
	if !ok {
		t.Fatal("no migration Job")
	}
	checkPod("Job", job.Spec.Template.Spec)
	if jc := job.Spec.Template.Spec.Containers; len(jc) != 1 || !slices.Equal(jc[0].Args, []string{"migrate", "up"}) {
		t.Errorf("migration job must run `authd migrate up`")
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

	// The ConfigMap's file with the Deployment's environment is valid.
	cm, ok := objs["ConfigMap/authd"]
	if !ok || cm.Data["authd.yaml"] == "" {
		t.Fatal("no ConfigMap/authd with authd.yaml")
	}
	path := writeFile(t, cm.Data["authd.yaml"])
	cfg, err := loadConfig(flagsFor(t, "--config", path), envOf(env))
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
