package client

import "github.com/omnimemory/omnimemory-metrics/client/api"

// The bodies the service takes and answers are those of package api, under
// the names this package has always given them.
type (
	// Operation is one tool call to record (TrackOperation, Batcher.Add).
	// Leave OperationID zero and the client sets a new one before the first
	// attempt; set it yourself (NewOperationID) to make your own retries,
	// across calls or restarts, idempotent too.
	Operation = api.OperationRequest
	// StoredOperation is an operation as the service answers it.
	StoredOperation = api.Operation
	// ExportedOperation is a stored operation and whether the tool
	// answered from its cache, as the export and the live stream
	// (StreamOperations) carry it.
	ExportedOperation = api.ExportedOperation
	// OperationPage is the answer of QueryOperations.
	OperationPage = api.OperationPage

	ToolBreakdown  = api.ToolBreakdown
	ToolStats      = api.ToolStats
	ModeBreakdown  = api.ModeBreakdown
	APISavings     = api.APISavings
	PeriodSavings  = api.PeriodSavings
	Savings        = api.Savings
	ToolSavings    = api.ToolSavings
	TrendPoint     = api.TrendPoint
	PreviousPeriod = api.PreviousPeriod
	Spend          = api.Spend
	SpendTokens    = api.SpendTokens
	ModelSpend     = api.ModelSpend
	ToolSpend      = api.ToolSpend
	SpendTrend     = api.SpendTrendPoint
	SavingsChange  = api.SavingsChange
	// Aggregate is the answer of Aggregate; AggregateGroup one of its
	// groups.
	Aggregate      = api.Aggregate
	AggregateGroup = api.AggregateGroup

	// SessionRequest opens a session (StartSession, GetOrCreateSession).
	SessionRequest = api.SessionRequest
	Session        = api.Session
	SessionStarted = api.SessionStarted
	// SessionHandle is the answer of GetOrCreateSession.
	SessionHandle  = api.SessionGetOrCreate
	Heartbeat      = api.Heartbeat
	SessionEnded   = api.SessionEnded
	ActiveSessions = api.ActiveSessions

	// FieldError is one item of a 422 answer, shaped as FastAPI gives it.
	FieldError = api.FieldError
)

// Change is how a figure moved from the previous period to the current one.
type Change[T float64 | int64] = api.Change[T]

// The tools and operation modes of the contract. Any tool may pair with any
// mode.
const (
	ToolRead   = api.ToolRead
	ToolSearch = api.ToolSearch

	ModeFull       = api.ModeFull
	ModeOverview   = api.ModeOverview
	ModeSymbol     = api.ModeSymbol
	ModeReferences = api.ModeReferences
	ModeSemantic   = api.ModeSemantic
	ModeTriIndex   = api.ModeTriIndex
)

// MaxBatchOperations bounds the operations of one TrackOperations call, as
// the service does.
const MaxBatchOperations = api.MaxBatchOperations
