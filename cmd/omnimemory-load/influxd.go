package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
)

// influxServer is an influxd 1.8 this tool started: loopback only, Flux on,
// every folder under its own directory.
type influxServer struct {
	*realtools.Influxd
}

// startInfluxd starts .tools/bin/influxd (or $OMNIMEMORY_INFLUXD) with its
// data under dir and waits until it answers /ping.
func startInfluxd(ctx context.Context, dir string) (*influxServer, error) {
	s, err := realtools.StartInfluxd(ctx, realtools.InfluxdOptions{Dir: filepath.Join(dir, "influxd"), Env: cleanEnv()})
	if errors.Is(err, realtools.ErrMissing) {
		return nil, fmt.Errorf("%w (run scripts/provision.sh, or bench with --stores sqlite)", err)
	}
	if err != nil {
		return nil, err
	}
	return &influxServer{s}, nil
}

// stop stops influxd: SIGTERM, then SIGKILL after grace.
func (s *influxServer) stop(grace time.Duration) { _ = s.StopWithin(grace) }

func (s *influxServer) pid() int { return s.Pid() }

// createDatabase runs CREATE DATABASE through InfluxQL.
func (s *influxServer) createDatabase(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.CreateDatabase(ctx, name); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}
