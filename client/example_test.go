package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/client"
)

func ExampleNew() {
	c, err := client.New("http://localhost:8003",
		client.WithToken(os.Getenv("OMNIMEMORY_API_TOKEN")),
		client.WithUserAgent("my-tool/1.2"),
		client.WithTimeout(2*time.Second),
		client.WithRetry(client.RetryPolicy{MaxAttempts: 3, MaxBackoff: time.Second}),
		client.WithHTTPClient(&http.Client{Transport: http.DefaultTransport}),
		client.WithLogger(slog.Default()),
	)
	if err != nil {
		log.Fatal(err)
	}
	_ = c
}

func ExampleClient_TrackOperation() {
	ctx := context.Background()
	c, err := client.New(exampleURL)
	if err != nil {
		log.Fatal(err)
	}
	session := uuid.New() // usually from GetOrCreateSession
	res, err := c.TrackOperation(ctx, client.Operation{
		SessionID:      session,
		ToolID:         "example-track",
		ToolName:       client.ToolRead,
		OperationMode:  client.ModeOverview,
		FilePath:       "src/main.go",
		Parameters:     map[string]any{"compress": true},
		TokensOriginal: 5000,
		TokensActual:   500,
		ResponseTimeMs: 12.5,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Status, "replayed:", res.Replayed)

	s, err := c.GetSession(ctx, session)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("operations:", s.TotalOperations, "tokens saved:", s.TokensSaved)
	// Output:
	// success replayed: false
	// operations: 1 tokens saved: 4500
}

func ExampleClient_APISavings() {
	ctx := context.Background()
	c, err := client.New(exampleURL)
	if err != nil {
		log.Fatal(err)
	}
	toolID := "example-savings-" + uuid.NewString()
	session := uuid.New()
	now := time.Now()
	for _, op := range []client.Operation{
		{ToolName: client.ToolRead, OperationMode: client.ModeOverview, TokensOriginal: 5000, TokensActual: 500},
		{ToolName: client.ToolSearch, OperationMode: client.ModeSemantic, TokensOriginal: 2000, TokensActual: 1000},
		// A day and a half ago: in the previous 24 hours.
		{ToolName: client.ToolRead, OperationMode: client.ModeFull, TokensOriginal: 5000, TokensActual: 1000, CreatedAt: now.Add(-36 * time.Hour)},
	} {
		op.SessionID, op.ToolID, op.ResponseTimeMs = session, toolID, 10
		if _, err := c.TrackOperation(ctx, op); err != nil {
			log.Fatal(err)
		}
	}

	sv, err := c.APISavings(ctx, client.SavingsQuery{TimeRange: client.Range24h, ToolID: toolID, Compare: client.ComparePrevious})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("operations: %d, tokens saved: %d of %d (%.2f%%)\n",
		sv.TotalOperations, sv.TotalTokensPrevented, sv.TotalTokensProcessed, sv.SavingsPercentage)
	fmt.Printf("cost: baseline $%.4f, actual $%.4f, saved $%.4f\n", sv.APICostBaseline, sv.APICostActual, sv.TotalCostSaved)
	fmt.Printf("search saved $%.4f\n", sv.BreakdownByTool.Search.CostSaved)
	fmt.Printf("previous 24h: %d operation, saved $%.4f\n", sv.PreviousPeriod.TotalOperations, sv.PreviousPeriod.TotalCostSaved)
	fmt.Printf("change: %+.4f USD (%+.1f%%)\n", sv.Change.TotalCostSaved.Absolute, *sv.Change.TotalCostSaved.Percent)
	// Output:
	// operations: 2, tokens saved: 5500 of 7000 (78.57%)
	// cost: baseline $0.1050, actual $0.0225, saved $0.0825
	// search saved $0.0150
	// previous 24h: 1 operation, saved $0.0600
	// change: +0.0225 USD (+37.5%)
}

func ExampleClient_ToolBreakdown() {
	ctx := context.Background()
	c, err := client.New(exampleURL)
	if err != nil {
		log.Fatal(err)
	}
	toolID := "example-breakdown-" + uuid.NewString()
	session := uuid.New()
	for _, ms := range []float64{10, 30} {
		op := client.Operation{SessionID: session, ToolID: toolID, ToolName: client.ToolSearch, OperationMode: client.ModeTriIndex,
			TokensOriginal: 8000, TokensActual: 2000, ResponseTimeMs: ms}
		if _, err := c.TrackOperation(ctx, op); err != nil {
			log.Fatal(err)
		}
	}
	bd, err := c.ToolBreakdown(ctx, client.BreakdownQuery{TimeRange: client.Range1h, ToolID: toolID})
	if err != nil {
		log.Fatal(err)
	}
	mode := bd.Search.ByMode[client.ModeTriIndex]
	fmt.Printf("search: %d operations, %d tokens saved, %.1f ms on average\n",
		bd.Search.TotalOperations, bd.Search.TotalTokensPrevented, bd.Search.AvgResponseTimeMs)
	fmt.Printf("tri_index: %d operations; read: %d operations\n", mode.Count, bd.Read.TotalOperations)
	fmt.Printf("saved $%.4f over %s\n", bd.TotalCostSaved, bd.TimePeriod)
	// Output:
	// search: 2 operations, 12000 tokens saved, 20.0 ms on average
	// tri_index: 2 operations; read: 0 operations
	// saved $0.1800 over 1h
}

func ExampleClient_GetOrCreateSession() {
	ctx := context.Background()
	c, err := client.New(exampleURL)
	if err != nil {
		log.Fatal(err)
	}
	// An instance id makes the call safe to retry, and lets a restarted
	// process find its session again.
	req := client.SessionRequest{ToolID: "example-sessions", ToolVersion: "1.0.0", InstanceID: uuid.NewString()}
	first, err := c.GetOrCreateSession(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	again, err := c.GetOrCreateSession(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(first.Status, again.Status, "same session:", first.SessionID == again.SessionID)

	hb, err := c.Heartbeat(ctx, first.SessionID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("heartbeat:", hb.Status)
	end, err := c.EndSession(ctx, first.SessionID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(end.Status, "operations:", end.Summary.TotalOperations)
	// Output:
	// created existing same session: true
	// heartbeat: active
	// ended operations: 0
}

func ExampleAPIError() {
	ctx := context.Background()
	c, err := client.New(exampleURL)
	if err != nil {
		log.Fatal(err)
	}
	prevented := int64(5) // neither 10-20 nor max(0, 10-20)
	_, err = c.TrackOperation(ctx, client.Operation{
		SessionID: uuid.New(), ToolID: "example-errors",
		ToolName: "write", OperationMode: client.ModeFull, TokensOriginal: 10, TokensActual: 20, ResponseTimeMs: 1,
		TokensPrevented: &prevented,
	})
	var apiErr *client.APIError
	if errors.As(err, &apiErr) {
		fmt.Println(apiErr.StatusCode, "retryable:", client.IsRetryable(err))
		for _, f := range apiErr.Fields {
			fmt.Printf("%s (%s)\n", f.Field(), f.Type)
		}
	}
	_, err = c.GetSession(ctx, uuid.MustParse("123e4567-e89b-12d3-a456-426614174999"))
	fmt.Println("not found:", client.IsNotFound(err))
	// Output:
	// 422 retryable: false
	// body.tool_name (enum)
	// body.tokens_prevented (value_error)
	// not found: true
}

func ExampleBatcher() {
	ctx := context.Background()
	c, err := client.New(exampleURL)
	if err != nil {
		log.Fatal(err)
	}
	b := client.NewBatcher(c, client.BatchOptions{
		MaxOps:        100,
		FlushInterval: 100 * time.Millisecond,
		OnError:       func(err error, ops []client.Operation) { log.Printf("%d operations lost: %v", len(ops), err) },
	})
	toolID := "example-batcher-" + uuid.NewString()
	session := uuid.New()
	for i := range 250 {
		err := b.Add(ctx, client.Operation{
			SessionID: session, ToolID: toolID, ToolName: client.ToolRead, OperationMode: client.ModeSymbol,
			TokensOriginal: 1000, TokensActual: 100, ResponseTimeMs: float64(i % 7),
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	closeCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := b.Close(closeCtx); err != nil { // sends what is still held
		log.Fatal(err)
	}
	fmt.Println("sent:", b.Stats().Sent)

	s, err := c.GetSession(ctx, session)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("stored:", s.TotalOperations, "tokens saved:", s.TokensSaved)
	// Output:
	// sent: 250
	// stored: 250 tokens saved: 225000
}

func ExampleClient_StreamOperations() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.New(exampleURL)
	if err != nil {
		log.Fatal(err)
	}
	// A tool reports operations meanwhile (here a goroutine, every 200 ms
	// until the stream is done).
	go func() {
		for ctx.Err() == nil {
			_, _ = c.TrackOperation(ctx, client.Operation{SessionID: uuid.New(), ToolID: "example-stream",
				ToolName: client.ToolSearch, OperationMode: client.ModeSemantic, TokensOriginal: 900, TokensActual: 90, ResponseTimeMs: 4})
			time.Sleep(200 * time.Millisecond)
		}
	}()
	done := errors.New("done")
	err = c.StreamOperations(ctx, client.StreamQuery{ToolID: "example-stream"}, func(op client.ExportedOperation) error {
		fmt.Println(op.ToolName, op.OperationMode, op.TokensPrevented)
		return done // one is enough here; answer nil to go on
	})
	cancel()
	if !errors.Is(err, done) {
		log.Fatal(err)
	}
	// Output: search semantic 810
}
