package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// statusKB answers the value in kB of the field key (such as "VmRSS" or
// "VmHWM") of a /proc/<pid>/status text.
func statusKB(status, key string) (int64, bool) {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != key {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0, false
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, false
		}
		if len(f) > 1 {
			switch strings.ToLower(f[1]) {
			case "kb":
			case "mb":
				n *= 1024
			case "gb":
				n *= 1024 * 1024
			default:
				return 0, false
			}
		}
		return n, true
	}
	return 0, false
}

// readStatusKB reads one field of /proc/<pid>/status.
func readStatusKB(pid int, key string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	v, ok := statusKB(string(b), key)
	if !ok {
		return 0, fmt.Errorf("/proc/%d/status: no %s", pid, key)
	}
	return v, nil
}

// rssSampler samples a process's VmRSS every interval and keeps the maximum
// since the last Mark.
type rssSampler struct {
	pid  int
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	phase   int64 // max VmRSS (kB) since the last Mark
	overall int64
}

// sampleRSS starts sampling pid until Stop.
func sampleRSS(pid int, interval time.Duration) *rssSampler {
	s := &rssSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	s.sample()
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.sample()
			}
		}
	}()
	return s
}

func (s *rssSampler) sample() {
	v, err := readStatusKB(s.pid, "VmRSS")
	if err != nil {
		return // the process is gone or going: keep what was seen
	}
	s.mu.Lock()
	s.phase = max(s.phase, v)
	s.overall = max(s.overall, v)
	s.mu.Unlock()
}

// Mark answers the largest VmRSS (kB) seen since the previous Mark (or the
// start) and starts a new phase.
func (s *rssSampler) Mark() int64 {
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.phase
	s.phase = 0
	return v
}

// Stop ends sampling and answers the largest VmRSS seen overall.
func (s *rssSampler) Stop() int64 {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.overall
}
