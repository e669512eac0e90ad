package main

import (
	"encoding/hex"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// The realistic mix the generator draws from: five reporting clients with ten
// sessions each; read (70 %) and search (30 %) in their usual modes.
var (
	clients  = []string{"claude-code", "cursor", "windsurf", "continue", "cline"}
	readMix  = weighted{{api.ModeFull, 20}, {api.ModeOverview, 40}, {api.ModeSymbol, 25}, {api.ModeReferences, 15}}
	searchMx = weighted{{api.ModeSemantic, 60}, {api.ModeTriIndex, 40}}
	queries  = []string{"auth handler", "retry with backoff", "parse config", "database migration", "http middleware", "token budget"}
)

const sessionsPerClient = 10

type weighted []struct {
	v string
	w int
}

func (ws weighted) pick(r *rand.Rand) string {
	total := 0
	for _, w := range ws {
		total += w.w
	}
	n := r.IntN(total)
	for _, w := range ws {
		if n < w.w {
			return w.v
		}
		n -= w.w
	}
	return ws[len(ws)-1].v
}

// op is one generated operation, in the fields the API takes.
type op struct {
	SessionID      string
	ToolID         string
	ToolName       string
	Mode           string
	FilePath       string // empty: none
	Params         string // a JSON object
	TokensOriginal int64
	TokensActual   int64
	ResponseTimeMs float64
	CreatedAt      int64 // unix microseconds; 0: absent (the service stamps now)
}

// generator draws operations deterministically from (seed, stream): the
// batch phase and the line-protocol phase regenerate the same points.
type generator struct {
	sessions [][]string // per client
	span     time.Duration
	end      time.Time // created_at is uniform in [end-span, end); zero end: no created_at
	// slices, when > 0, orders batches in time: batch i's created_at is
	// uniform in the i-th of slices equal parts of the span (the oldest
	// first), as operations arrive live and as an import reads them; 0
	// scatters every batch over the whole span.
	slices int64
}

func newGenerator(seed uint64, end time.Time, span time.Duration) *generator {
	r := rand.New(rand.NewPCG(seed, 0x5e55))
	g := &generator{end: end, span: span}
	for range clients {
		var ss []string
		for range sessionsPerClient {
			ss = append(ss, uuidString(r))
		}
		g.sessions = append(g.sessions, ss)
	}
	return g
}

// uuidString draws a random (version 4) UUID.
func uuidString(r *rand.Rand) string {
	var b [16]byte
	for i := 0; i < 16; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// next draws one operation of batch i.
func (g *generator) next(r *rand.Rand, i int64) op {
	c := r.IntN(len(clients))
	o := op{SessionID: g.sessions[c][r.IntN(sessionsPerClient)], ToolID: clients[c]}
	if r.IntN(100) < 70 {
		o.ToolName = api.ToolRead
		o.Mode = readMix.pick(r)
		o.FilePath = "src/pkg" + strconv.Itoa(r.IntN(40)) + "/file" + strconv.Itoa(r.IntN(200)) + ".go"
		o.Params = `{"compress":` + strconv.FormatBool(r.IntN(2) == 0) + `}`
		o.TokensOriginal = 500 + r.Int64N(20000)
		switch o.Mode {
		case "full":
			o.TokensActual = o.TokensOriginal * (70 + r.Int64N(31)) / 100
		case "overview":
			o.TokensActual = o.TokensOriginal * (5 + r.Int64N(16)) / 100
		default:
			o.TokensActual = o.TokensOriginal * (1 + r.Int64N(10)) / 100
		}
		o.ResponseTimeMs = float64(5+r.IntN(300)) + float64(r.IntN(100))/100
	} else {
		o.ToolName = api.ToolSearch
		o.Mode = searchMx.pick(r)
		o.Params = `{"query":"` + queries[r.IntN(len(queries))] + `","limit":` + strconv.Itoa(5+r.IntN(20)) + `}`
		o.TokensOriginal = 5000 + r.Int64N(60000)
		o.TokensActual = o.TokensOriginal * (2 + r.Int64N(15)) / 100
		o.ResponseTimeMs = float64(20+r.IntN(600)) + float64(r.IntN(100))/100
	}
	if r.IntN(50) == 0 { // now and then a tool costs more than its baseline
		o.TokensActual = o.TokensOriginal + r.Int64N(500)
	}
	if !g.end.IsZero() {
		from, width := g.end.Add(-g.span).UnixMicro(), g.span.Microseconds()
		if g.slices > 0 {
			i %= g.slices
			from, width = from+width*i/g.slices, width*(i+1)/g.slices-width*i/g.slices
		}
		o.CreatedAt = from + r.Int64N(max(width, 1))
	}
	return o
}

// batchRand answers the random stream of batch i: the same operations every
// time it is asked.
func batchRand(seed uint64, i int64) *rand.Rand {
	return rand.New(rand.NewPCG(seed^0x9e3779b97f4a7c15, uint64(i)))
}

// appendJSON appends o as the JSON body of POST /track/tool-operation.
// Every generated string is plain ASCII without quotes or backslashes.
func (o *op) appendJSON(b []byte) []byte {
	b = append(b, `{"session_id":"`...)
	b = append(b, o.SessionID...)
	b = append(b, `","tool_name":"`...)
	b = append(b, o.ToolName...)
	b = append(b, `","operation_mode":"`...)
	b = append(b, o.Mode...)
	b = append(b, `","parameters":`...)
	b = append(b, o.Params...)
	if o.FilePath != "" {
		b = append(b, `,"file_path":"`...)
		b = append(b, o.FilePath...)
		b = append(b, '"')
	}
	b = append(b, `,"tokens_original":`...)
	b = strconv.AppendInt(b, o.TokensOriginal, 10)
	b = append(b, `,"tokens_actual":`...)
	b = strconv.AppendInt(b, o.TokensActual, 10)
	b = append(b, `,"response_time_ms":`...)
	b = strconv.AppendFloat(b, o.ResponseTimeMs, 'f', -1, 64)
	b = append(b, `,"tool_id":"`...)
	b = append(b, o.ToolID...)
	b = append(b, '"')
	if o.CreatedAt != 0 {
		b = append(b, `,"created_at":"`...)
		b = time.UnixMicro(o.CreatedAt).UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
		b = append(b, '"')
	}
	return append(b, '}')
}

// appendBatchJSON appends the body of POST /track/tool-operations holding
// n operations of batch i.
func (g *generator) appendBatchJSON(b []byte, seed uint64, i int64, n int) []byte {
	r := batchRand(seed, i)
	b = append(b, `{"operations":[`...)
	for k := range n {
		if k > 0 {
			b = append(b, ',')
		}
		o := g.next(r, i)
		b = o.appendJSON(b)
	}
	return append(b, "]}\n"...)
}

// appendLine appends o as the line-protocol point the InfluxDB store writes
// for it (the measurement, tags and fields of package schema), with the
// nanosecond offset the store uses to keep points of one microsecond apart.
func (o *op) appendLine(b []byte, id string, offsetNs int64) []byte {
	b = append(b, schema.Operation+","+schema.TagOperationMode+"="...)
	b = append(b, o.Mode...)
	b = append(b, ","+schema.TagSessionID+"="...)
	b = append(b, o.SessionID...)
	b = append(b, ","+schema.TagToolID+"="...)
	b = append(b, o.ToolID...)
	b = append(b, ","+schema.TagToolName+"="...)
	b = append(b, o.ToolName...)
	sep := byte(' ')
	if o.FilePath != "" {
		b = append(b, " "+schema.FieldFilePath+`="`...)
		b = append(b, o.FilePath...)
		b = append(b, '"')
		sep = ','
	}
	b = append(b, sep)
	b = append(b, schema.FieldID+`="`...)
	b = append(b, id...)
	b = append(b, `",`+schema.FieldParameters+`="`...)
	for i := 0; i < len(o.Params); i++ {
		if o.Params[i] == '"' || o.Params[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, o.Params[i])
	}
	b = append(b, `",`+schema.FieldResponseTimeMs+`=`...)
	b = strconv.AppendFloat(b, o.ResponseTimeMs, 'g', -1, 64)
	b = append(b, ","+schema.FieldTokensActual+"="...)
	b = strconv.AppendInt(b, o.TokensActual, 10)
	b = append(b, "i,"+schema.FieldTokensOriginal+"="...)
	b = strconv.AppendInt(b, o.TokensOriginal, 10)
	b = append(b, "i,"+schema.FieldTokensPrevented+"="...)
	b = strconv.AppendInt(b, max(0, o.TokensOriginal-o.TokensActual), 10)
	b = append(b, "i "...)
	b = strconv.AppendInt(b, o.CreatedAt*1000+offsetNs, 10)
	return append(b, '\n')
}

// appendBatchLines appends the line protocol of the same n operations as
// appendBatchJSON(seed, i, n), each with a fresh id.
func (g *generator) appendBatchLines(b []byte, seed uint64, i int64, n int) []byte {
	g.eachBatchOp(seed, i, n, func(k int, o *op, id string) {
		b = o.appendLine(b, id, int64(k%1000))
	})
	return b
}

// eachBatchOp calls f with the same n operations as appendBatchJSON(seed,
// i, n), in order, each with an id of its own: the operations of the
// references that write them without the service (line protocol, COPY).
func (g *generator) eachBatchOp(seed uint64, i int64, n int, f func(k int, o *op, id string)) {
	r := batchRand(seed, i)
	ids := rand.New(rand.NewPCG(seed, uint64(i)^0xfeed))
	for k := range n {
		o := g.next(r, i)
		f(k, &o, uuidString(ids))
	}
}
