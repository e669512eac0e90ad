package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/omnimemory/omnimemory-metrics/internal/tools"
)

// influxServer is an influxd 1.8 this tool started: loopback only, Flux on,
// every folder under dir.
type influxServer struct {
	*child
	URL string
}

// startInfluxd starts .tools/bin/influxd (or $OMNIMEMORY_INFLUXD) with its
// data under dir and waits until it answers /ping.
func startInfluxd(ctx context.Context, dir string) (*influxServer, error) {
	bin, err := tools.Find("influxd")
	if err != nil {
		return nil, fmt.Errorf("%w (run scripts/provision.sh, or bench with --stores sqlite)", err)
	}
	dir = filepath.Join(dir, "influxd")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	httpPort, err := tools.FreePort()
	if err != nil {
		return nil, err
	}
	rpcPort, err := tools.FreePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "influxdb.conf")
	if err := os.WriteFile(conf, []byte(tools.InfluxdConfig(dir, rpcPort, httpPort)), 0o600); err != nil {
		return nil, err
	}
	c, err := startChild("influxd", bin, []string{"run", "-config", conf}, cleanEnv("INFLUXDB_CONFIG_PATH="+conf), dir, filepath.Join(dir, "influxd.log"))
	if err != nil {
		return nil, err
	}
	s := &influxServer{child: c, URL: fmt.Sprintf("http://127.0.0.1:%d", httpPort)}
	if err := c.waitHTTP(ctx, s.URL+"/ping", http.StatusNoContent, 60*time.Second); err != nil {
		c.stop(5 * time.Second)
		return nil, err
	}
	return s, nil
}

// createDatabase runs CREATE DATABASE through InfluxQL.
func (s *influxServer) createDatabase(ctx context.Context, name string) error {
	cl := newClient(1, 30*time.Second)
	defer cl.CloseIdleConnections()
	form := url.Values{"q": {`CREATE DATABASE "` + name + `"`}}
	b, err := do(ctx, cl, http.MethodPost, s.URL+"/query", "application/x-www-form-urlencoded", []byte(form.Encode()), http.StatusOK)
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	if strings.Contains(string(b), `"error"`) {
		return fmt.Errorf("create database %s: %s", name, b)
	}
	return nil
}
