// Package omnimemorymetrics holds no code: it is the module's root, whose
// tests hold the shape of the repository, so that a change that breaks it
// fails the test suite: the layering that docs/architecture.md describes
// (architecture_test.go), and the hand-written docs against the code
// (docs_test.go: links and anchors, settings, endpoints).
//
// The layers, each depending only on those below it:
//
//	cmd/omnimemory-metrics   wiring: configuration, stores, service, server
//	handlers                 HTTP only: decode, call the service, encode, map errors
//	exporter                 the service layer: ingest, sessions, reports, import
//	tsdb/sqlite, tsdb/postgres, tsdb/influx  the stores, behind the tsdb interfaces
//	tsdb                     the Store interfaces, domain types, window planner
//	client/api               the wire types (standard library and uuid only)
package omnimemorymetrics
