// Package exporter is the service layer of omnimemory-metrics: the business
// rules between the HTTP layer (handlers) and the stores (tsdb). The Tracker
// hands validated operations to one writer that commits them in batches
// (group commit) and bumps the Prometheus metrics of what was accepted; the
// Reporter turns store aggregates into the priced answers of the REST API;
// Sessions opens, reuses and ends the tools' sessions; Operations lists and
// exports stored operations within its bounds. Service holds them all over
// one store.
package exporter

import "math"

// Pricing converts tokens into US dollars at one price per 1,000 tokens.
type Pricing struct {
	PerThousandUSD float64
}

// Cost answers the price of tokens, kept to nine decimals: money is never
// rounded to cents, but float noise (1.2555000000000001) is removed.
func (p Pricing) Cost(tokens int64) float64 {
	return round(float64(tokens)*p.PerThousandUSD/1000, 9)
}

// round rounds x to n decimals, leaving values too large to carry n decimals
// in a float64 as they are.
func round(x float64, n int) float64 {
	scale := math.Pow10(n)
	if math.IsNaN(x) || math.IsInf(x, 0) || math.Abs(x*scale) > 1<<52 {
		return x
	}
	return math.Round(x*scale) / scale
}

// percent answers part/whole*100 to two decimals, 0 when whole is 0.
func percent(part, whole int64) float64 {
	if whole == 0 {
		return 0
	}
	return round(float64(part)/float64(whole)*100, 2)
}

// relative answers (cur - prev) / |prev| * 100 to two decimals, nil when
// prev is 0 (no change can be said relative to nothing). Dividing by the
// magnitude keeps the sign of the change: from -100 to -50 is +50 %.
func relative(cur, prev float64) *float64 {
	if prev == 0 {
		return nil
	}
	r := round((cur-prev)/math.Abs(prev)*100, 2)
	return &r
}

// mean answers sum/n, 0 when n is 0.
func mean(sum float64, n int64) float64 {
	if n == 0 {
		return 0
	}
	return round(sum/float64(n), 9)
}
