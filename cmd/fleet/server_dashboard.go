package main

import (
	"context"
	"embed"
	"io/fs"
	"net/http"
)

// dashboardFS holds the dashboard: plain HTML, CSS and JavaScript modules,
// served as they are (no build step, nothing fetched from elsewhere).
//
//go:embed dashboard
var dashboardFS embed.FS

func init() {
	addServerPart("dashboard", startDashboard)
}

// startDashboard serves the dashboard on "GET /" and "GET /static/...". The
// pages read the projection service's HTTP API (/api/...) from the same
// origin; with HTTP off it does nothing.
func startDashboard(_ context.Context, env *ServerEnv) (func(), error) {
	if env.Mux == nil {
		return nil, nil
	}
	dashboardRoutes(env.Mux)
	return nil, nil
}

// dashboardRoutes registers the dashboard's routes on mux.
func dashboardRoutes(mux *http.ServeMux) {
	assets, err := fs.Sub(dashboardFS, "dashboard")
	if err != nil { // cannot happen: the folder is embedded
		panic(err)
	}
	index, err := fs.ReadFile(assets, "index.html")
	if err != nil {
		panic(err)
	}
	files := http.StripPrefix("/static/", http.FileServerFS(assets))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(index)
	})
	mux.HandleFunc("GET /static/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})
}
