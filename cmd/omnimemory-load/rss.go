package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
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

// rssSampler samples a memory figure (kB) every interval and keeps the
// maximum since the last Mark: one process's VmRSS (sampleRSS), or the
// proportional set size of a whole tree of processes (sampleTreePSS).
type rssSampler struct {
	read func() (int64, error)
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	phase   int64 // max (kB) since the last Mark
	overall int64
}

// sampleRSS samples pid's VmRSS until Stop.
func sampleRSS(pid int, interval time.Duration) *rssSampler {
	return sampleMemory(func() (int64, error) { return readStatusKB(pid, "VmRSS") }, interval)
}

// sampleTreePSS samples the summed Pss of pid and all its descendants
// (treePSSKB) until Stop: the memory of a server made of many processes
// sharing memory, such as PostgreSQL's, counted once.
func sampleTreePSS(pid int, interval time.Duration) *rssSampler {
	return sampleMemory(func() (int64, error) { return treePSSKB(pid) }, interval)
}

func sampleMemory(read func() (int64, error), interval time.Duration) *rssSampler {
	s := &rssSampler{read: read, stop: make(chan struct{}), done: make(chan struct{})}
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
	v, err := s.read()
	if err != nil {
		return // the process is gone or going: keep what was seen
	}
	s.mu.Lock()
	s.phase = max(s.phase, v)
	s.overall = max(s.overall, v)
	s.mu.Unlock()
}

// treePSSKB answers the sum of the Pss (kB, /proc/<pid>/smaps_rollup) of
// pid and of every process descending from it. Pss shares each page among
// the processes mapping it, so memory shared by them all (PostgreSQL's
// shared buffers) counts once, unlike a sum of VmRSS.
func treePSSKB(pid int) (int64, error) {
	parents, err := realtools.ParentPIDs()
	if err != nil {
		return 0, err
	}
	total, err := pssKB(pid)
	if err != nil {
		return 0, err
	}
	for p := range parents {
		if p != pid && descendsFrom(parents, p, pid) {
			if v, err := pssKB(p); err == nil { // a process may end meanwhile
				total += v
			}
		}
	}
	return total, nil
}

// pssKB reads the Pss line of /proc/<pid>/smaps_rollup.
func pssKB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	v, ok := statusKB(string(b), "Pss")
	if !ok {
		return 0, fmt.Errorf("/proc/%d/smaps_rollup: no Pss", pid)
	}
	return v, nil
}

// descendsFrom reports whether p's chain of parents reaches root.
func descendsFrom(parents map[int]int, p, root int) bool {
	for range 64 { // deeper trees than this are no server's
		pp, ok := parents[p]
		if !ok || pp <= 1 {
			return false
		}
		if pp == root {
			return true
		}
		p = pp
	}
	return false
}

// Mark answers the largest figure (kB) seen since the previous Mark (or the
// start) and starts a new phase.
func (s *rssSampler) Mark() int64 {
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.phase
	s.phase = 0
	return v
}

// Stop ends sampling and answers the largest figure (kB) seen overall.
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
