package main

import (
	"bytes"
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"text/template"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

var templates = template.Must(template.New("").Option("missingkey=error").ParseFS(templateFS, "templates/*.tmpl"))

// ConfigParams fill a contender's config template.
type ConfigParams struct {
	Dir      string // the contender's own temp dir (pid file, logs, temp paths)
	Port     int    // where it listens, on 127.0.0.1
	Upstream int    // the backend's port, on 127.0.0.1
	MaxConn  int    // client connections it must hold at once (the idle phase and some)
	NoFile   int    // open-file limit it may set for itself (nginx's worker)
}

// RenderConfig fills the template named name ("nginx.conf.tmpl",
// "haproxy.cfg.tmpl", "Caddyfile.tmpl").
func RenderConfig(name string, p ConfigParams) ([]byte, error) {
	if p.Port <= 0 || p.Upstream <= 0 || p.MaxConn <= 0 || p.NoFile <= 0 || p.Dir == "" {
		return nil, fmt.Errorf("config %s: incomplete parameters %+v", name, p)
	}
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, name, p); err != nil {
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// writeConfig renders the template into p.Dir under file and returns the
// file's path.
func writeConfig(name, file string, p ConfigParams) (string, error) {
	b, err := RenderConfig(name, p)
	if err != nil {
		return "", err
	}
	path := filepath.Join(p.Dir, file)
	return path, os.WriteFile(path, b, 0o644)
}
