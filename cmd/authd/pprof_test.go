package main

import (
	"errors"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// Profiling endpoints exist only with metrics.pprof, only on the private
// metrics listener, and never on the public one.
func TestPprofOnMetricsListenerOnly(t *testing.T) {
	t.Parallel()
	for _, enabled := range []bool{false, true} {
		metricsAddr := freeAddr(t)
		env := map[string]string{"AUTHD_METRICS_LISTEN": metricsAddr}
		if enabled {
			env["AUTHD_METRICS_PPROF"] = "true"
		}
		inst := startAuthd(t, freeAddr(t), env, "--dev")
		want := http.StatusNotFound
		if enabled {
			want = http.StatusOK
		}
		if got := statusWhenListening(t, "http://"+metricsAddr+"/debug/pprof/cmdline"); got != want {
			t.Errorf("pprof %v: /debug/pprof/cmdline on the metrics listener: %d, want %d", enabled, got, want)
		}
		if got := statusOf(t, inst.URL+"/debug/pprof/cmdline"); got != http.StatusNotFound {
			t.Errorf("pprof %v: /debug/pprof/cmdline on the public listener: %d", enabled, got)
		}
		inst.Stop(t)
	}
	// Without a metrics listener there is nowhere private to serve them.
	if _, err := loadConfig(flagsFor(t, "--dev"), envOf(map[string]string{"AUTHD_METRICS_PPROF": "true"})); err == nil {
		t.Error("metrics.pprof without metrics.listen was accepted")
	}
}

// statusWhenListening is statusOf for a listener that may still be coming
// up (the metrics listener starts beside the public one): a refused
// connection is retried for a while.
func statusWhenListening(t *testing.T, url string) int {
	t.Helper()
	for range 250 {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return resp.StatusCode
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: nothing listening after 5s", url)
	return 0
}
