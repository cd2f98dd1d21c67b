package main

import (
	"net/http"
	"net/http/pprof"
)

// pprofHandler serves Go's profiles under /debug/pprof/ (the server's
// --pprof-addr), on a mux of its own: nothing of it reaches the API's port.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
