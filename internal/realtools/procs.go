package realtools

import (
	"os"
	"strconv"
	"strings"
)

// ParentPIDs answers the parent of every process, from /proc (an error
// where there is none).
func ParentPIDs() (map[int]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := make(map[int]int, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := strings.LastIndex(string(b), ") ")
		if i < 0 {
			continue
		}
		if f := strings.Fields(string(b)[i+2:]); len(f) > 1 {
			if ppid, err := strconv.Atoi(f[1]); err == nil {
				out[pid] = ppid
			}
		}
	}
	return out, nil
}
