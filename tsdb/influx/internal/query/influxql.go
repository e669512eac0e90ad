package query

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// InfluxDB 1.x runs Flux (0.65 in 1.8) without pushing aggregates down into
// its storage engine: an hourly sum over a window reads every point of it
// through the Flux engine, about 5 times slower than the same sums in
// InfluxQL, which 1.x aggregates inside the engine. On 1.x, then, the
// hourly totals that back every aggregate (the cache's fills and the raw
// edges of a window) are read with InfluxQL through /query; 2.x keeps Flux,
// where it is pushed down. The server's version comes from its
// X-Influxdb-Version header (see NoteVersion).

// maxQLBody bounds the answer of one InfluxQL query: hours × keys rows,
// or the points of a few edge minutes.
const maxQLBody = 64 << 20

// ErrTooLarge is answered for an InfluxQL answer larger than maxQLBody,
// or a chunked one of more rows than its bound.
var ErrTooLarge = errors.New("influx: influxql: answer too large")

// readHoursQL answers what ReadHours answers, from one InfluxQL request
// (see sumTagsQL).
func (s *Reader) readHoursQL(ctx context.Context, name string, lo, hi time.Time, toolID string) ([]HourRow, error) {
	var where string
	if toolID != "" {
		where = qlIdent(schema.TagToolID) + ` = ` + qlString(schema.TagValue(toolID))
	}
	var rows []HourRow
	keys := map[HourKey]*HourKey{}
	err := s.sumTagsQL(ctx, name, lo, hi, where, "1h",
		[]string{schema.TagToolID, schema.TagToolName, schema.TagOperationMode},
		func(tags map[string]string, ns int64, t tsdb.Totals, c tsdb.CacheCounts) error {
			k := HourKey{tags[schema.TagToolID], tags[schema.TagToolName], tags[schema.TagOperationMode]}
			key := keys[k]
			if key == nil {
				key = &k
				keys[k] = key
			}
			rows = append(rows, HourRow{Hour: tsdb.FloorTo(ns, int64(time.Hour)) / int64(time.Microsecond), Key: key, Totals: t, Cache: c})
			return nil
		})
	return rows, err
}

// sumTagsQL adds up, inside InfluxDB, the operations in [lo, hi) that
// match the InfluxQL condition where ("" none), per bucket of width every
// ("1h", "1d") and per value of each of tags, in one InfluxQL request of
// two statements: the sums and counts, and the cache hits (a field
// condition of their own). add is called with each group that holds an
// operation: its tags, its bucket's start (unix nanoseconds), its totals
// and cache counts; its error ends the read.
func (s *Reader) sumTagsQL(ctx context.Context, name string, lo, hi time.Time, where, every string, tags []string,
	add func(tags map[string]string, ns int64, t tsdb.Totals, c tsdb.CacheCounts) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	from := fmt.Sprintf(` FROM %s WHERE time >= %d AND time < %d`, qlIdent(schema.Operation), lo.UnixNano(), hi.UnixNano())
	if where != "" {
		from += ` AND ` + where
	}
	groupBy := ` GROUP BY time(` + every + `)`
	for _, t := range tags {
		groupBy += `, ` + qlIdent(t)
	}
	groupBy += ` fill(none)`
	cacheHit := qlIdent(schema.FieldCacheHit)
	q := fmt.Sprintf(`SELECT sum(%s), sum(%s), sum(%s), sum(%s), count(%s), count(%s)`,
		qlIdent(sumFields[0]), qlIdent(sumFields[1]), qlIdent(sumFields[2]), qlIdent(sumFields[3]), qlIdent(countField), cacheHit) +
		from + groupBy + `; SELECT count(` + cacheHit + `)` + from + ` AND ` + cacheHit + ` = true` + groupBy

	start := time.Now()
	groups := 0
	defer func() { s.log.Debug("influxql query", "query", name, "rows", groups, "took", time.Since(start)) }()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	series, err := s.influxQL(ctx, q)
	if err != nil {
		return err
	}
	type group struct {
		ns   int64
		tags map[string]string
		t    tsdb.Totals
		c    tsdb.CacheCounts
	}
	var out []*group
	hits := map[string]int64{} // by a bucket and the tags' values
	keyOf := func(ns int64, tv map[string]string) string {
		b := strconv.AppendInt(nil, ns, 10)
		for _, t := range tags {
			b = append(b, 0)
			b = append(b, tv[t]...)
		}
		return string(b)
	}
	for _, sr := range series {
		want := 7 // time, the four sums, the two counts
		if sr.Statement == 1 {
			want = 2 // time, the hits
		}
		for _, v := range sr.Values {
			if len(v) != want {
				return fmt.Errorf("influx: influxql: %d columns in a row, want %d", len(v), want)
			}
			var t, rt json.Number
			if err := num(v[0], &t); err != nil {
				return fmt.Errorf("influx: influxql: %w", err)
			}
			ns, err := t.Int64()
			if err != nil {
				return fmt.Errorf("influx: influxql: time %q", t)
			}
			if sr.Statement == 1 {
				var n int64
				if err := num(v[1], &n); err != nil {
					return fmt.Errorf("influx: influxql: %w", err)
				}
				hits[keyOf(ns, sr.Tags)] += n
				continue
			}
			g := &group{ns: ns, tags: sr.Tags}
			if err := errors.Join(num(v[1], &g.t.TokensOriginal), num(v[2], &g.t.TokensActual), num(v[3], &g.t.TokensPrevented),
				num(v[4], &rt), num(v[5], &g.t.Count), num(v[6], &g.c.Lookups)); err != nil {
				return fmt.Errorf("influx: influxql: %w", err)
			}
			if g.t.ResponseTimeSumMs, err = rt.Float64(); err != nil {
				return fmt.Errorf("influx: influxql: response time sum %q", rt)
			}
			if g.t.Count == 0 {
				continue
			}
			out = append(out, g)
		}
	}
	groups = len(out)
	for _, g := range out {
		g.c.Hits = hits[keyOf(g.ns, g.tags)]
		if err := add(g.tags, g.ns, g.t, g.c); err != nil {
			return err
		}
	}
	return nil
}

// num decodes a JSON number of an InfluxQL row into an int64 or keeps it
// as a json.Number; null (no points) is zero.
func num(v qlValue, dst any) error {
	n := json.Number(v.text)
	switch v.kind {
	case kindNull:
		n = "0"
	case kindNumber:
	default:
		return fmt.Errorf("value %v is not a number", v)
	}
	switch d := dst.(type) {
	case *json.Number:
		*d = n
	case *int64:
		i, err := n.Int64()
		if err != nil {
			f, ferr := n.Float64() // sums of integer fields come back as integers; be lenient
			if ferr != nil || f != float64(int64(f)) {
				return fmt.Errorf("value %s is not an integer", n)
			}
			i = int64(f)
		}
		*d = i
	}
	return nil
}

type qlSeries struct {
	Tags   map[string]string `json:"tags"`
	Values qlRows            `json:"values"`
	// Partial: the server cut the series (max-row-limit).
	Partial bool `json:"partial"`
	// Statement is the index of the statement that answered the series,
	// in a request of several.
	Statement int `json:"-"`
}

// qlRequest sends one InfluxQL read request on the store's database and
// retention policy (with chunked, the answer comes in chunks of
// qlChunkRows rows).
func (s *Reader) qlRequest(ctx context.Context, q string, chunked bool) (*http.Response, error) {
	db, rp, _ := strings.Cut(s.cfg.Bucket, "/")
	params := url.Values{"db": {db}, "q": {q}, "epoch": {"ns"}}
	if rp != "" {
		params.Set("rp", rp)
	}
	if chunked {
		params.Set("chunked", "true")
		params.Set("chunk_size", strconv.Itoa(qlChunkRows))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(s.cfg.URL, "/")+"/query?"+params.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("influx: influxql: %w", err)
	}
	if s.cfg.Token != "" {
		req.Header.Set("Authorization", "Token "+s.cfg.Token)
	}
	resp, err := s.httpc.Do(req)
	if err != nil {
		return nil, s.qlErr(ctx, err)
	}
	return resp, nil
}

// qlChunkRows is the most rows in one chunk of a chunked answer.
const qlChunkRows = 10000

// qlStatusErr answers the error of an answer whose status is not 2xx,
// from its message (msg, or the start of body).
func (s *Reader) qlStatusErr(resp *http.Response, msg string, body []byte) error {
	if msg == "" {
		msg = strings.TrimSpace(string(body[:min(len(body), 512)]))
	}
	err := fmt.Errorf("HTTP %d: %s", resp.StatusCode, msg)
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		return fmt.Errorf("%w: influxdb influxql query: %s", tsdb.ErrUnavailable, redact(err.Error(), s.cfg.Token))
	}
	return fmt.Errorf("influx: influxql: %s", redact(err.Error(), s.cfg.Token))
}

// influxQLEach runs one read statement as influxQL does, but reads its
// answer in chunks and hands each series of each chunk to each as it
// comes (a series may come in several parts, each with its tags), so that
// an answer of any size takes the memory of one chunk; at most maxRows
// rows, past which it answers ErrTooLarge.
func (s *Reader) influxQLEach(ctx context.Context, q string, maxRows int, each func(qlSeries) error) error {
	resp, err := s.qlRequest(ctx, q, true)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var out struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &out)
		return s.qlStatusErr(resp, out.Error, body)
	}
	dec := json.NewDecoder(resp.Body)
	dec.UseNumber()
	rows := 0
	for {
		var chunk struct {
			Results []struct {
				Series []qlSeries `json:"series"`
				Error  string     `json:"error"`
			} `json:"results"`
			Error string `json:"error"`
		}
		if err := dec.Decode(&chunk); err == io.EOF {
			return nil
		} else if err != nil {
			if ctx.Err() != nil {
				return s.qlErr(ctx, err)
			}
			return fmt.Errorf("influx: influxql: decode answer: %w", err)
		}
		if chunk.Error != "" {
			return fmt.Errorf("influx: influxql: %s", chunk.Error)
		}
		for _, r := range chunk.Results {
			if r.Error != "" {
				return fmt.Errorf("influx: influxql: %s", r.Error)
			}
			for _, sr := range r.Series {
				if rows += len(sr.Values); rows > maxRows {
					return fmt.Errorf("%w (%d rows)", ErrTooLarge, maxRows)
				}
				if err := each(sr); err != nil {
					return err
				}
			}
		}
	}
}

// influxQL runs one read statement on the store's database and retention
// policy and answers its series.
func (s *Reader) influxQL(ctx context.Context, q string) ([]qlSeries, error) {
	resp, err := s.qlRequest(ctx, q, false)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxQLBody+1))
	if err != nil {
		return nil, s.qlErr(ctx, err)
	}
	if len(body) > maxQLBody {
		return nil, fmt.Errorf("%w (%d bytes)", ErrTooLarge, maxQLBody)
	}
	var out struct {
		Results []struct {
			StatementID int        `json:"statement_id"`
			Series      []qlSeries `json:"series"`
			Error       string     `json:"error"`
		} `json:"results"`
		Error string `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	decodeErr := dec.Decode(&out)
	if resp.StatusCode/100 != 2 {
		return nil, s.qlStatusErr(resp, out.Error, body)
	}
	if decodeErr != nil {
		return nil, fmt.Errorf("influx: influxql: decode answer: %w", decodeErr)
	}
	if out.Error != "" {
		return nil, fmt.Errorf("influx: influxql: %s", out.Error)
	}
	var series []qlSeries
	for _, r := range out.Results {
		if r.Error != "" {
			return nil, fmt.Errorf("influx: influxql: %s", r.Error)
		}
		for i, sr := range r.Series {
			if sr.Partial {
				return nil, errors.New("influx: influxql: the server answered a partial series (raise max-row-limit)")
			}
			r.Series[i].Statement = r.StatementID
		}
		series = append(series, r.Series...)
	}
	return series, nil
}

// qlErr marks failures to reach InfluxDB (no answer, timeouts) as
// tsdb.ErrUnavailable, as queryErr does for Flux.
func (s *Reader) qlErr(ctx context.Context, err error) error {
	msg := redact(err.Error(), s.cfg.Token)
	var ne net.Error
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) {
		return fmt.Errorf("%w: influxdb influxql query: %s", tsdb.ErrUnavailable, msg)
	}
	return fmt.Errorf("influx: influxql: %s", msg)
}

// qlIdent quotes an InfluxQL identifier.
func qlIdent(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// qlString quotes an InfluxQL string literal.
func qlString(s string) string {
	return `'` + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + `'`
}
