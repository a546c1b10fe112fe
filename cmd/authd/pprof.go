package main

import (
	"net/http"
	"net/http/pprof"
)

// mountPprof adds Go's profiling endpoints to mux (the private metrics
// listener, with metrics.pprof). They are mounted explicitly rather than by
// importing net/http/pprof for its side effect, which would register them
// on http.DefaultServeMux for anyone who serves it.
func mountPprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}
