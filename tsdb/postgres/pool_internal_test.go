package postgres

import (
	"context"
	"log/slog"
	"testing"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
)

// TestPoolSize: the pool keeps defaultMaxConns unless the URL's
// pool_max_conns or Config.MaxConns says otherwise.
func TestPoolSize(t *testing.T) {
	url := realtools.SharedPostgres(t).NewDatabase(t)
	for _, c := range []struct {
		name string
		cfg  Config
		want int32
	}{
		{"default", Config{URL: url}, defaultMaxConns},
		{"URL", Config{URL: url + "?pool_max_conns=3"}, 3},
		{"Config", Config{URL: url + "?pool_max_conns=3", MaxConns: 5}, 5},
	} {
		s, err := Open(context.Background(), c.cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if got := s.pool.Config().MaxConns; got != c.want {
			t.Errorf("%s: the pool keeps %d connections, want %d", c.name, got, c.want)
		}
		s.Close()
	}
}
