// Package deploy has no code of its own: its tests check the deployment
// files at the repository's root against each other and against the real
// programs.
//
//   - prometheus.yml and rules/: `promtool check config`, `promtool check
//     rules`, `promtool test rules` (promtool_test.go), plus the rules'
//     conventions (names, severities, runbook links).
//   - A real Prometheus scraping the real service, built from
//     ./cmd/omnimemory-metrics, with the repository's rules loaded: sums,
//     recording rules, alerts, and every PromQL query of the Grafana
//     dashboards (stack_test.go, grafana_test.go).
//   - docker-compose.yml, Dockerfile, alertmanager/: parsed and cross-checked,
//     since no Docker engine runs in the tests (compose_test.go).
package deploy
