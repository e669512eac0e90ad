package handlers

import (
	"bytes"
	"compress/gzip"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"

	"github.com/omnimemory/omnimemory-metrics/client/api"
)

// The content types of OTLP/HTTP.
const (
	contentTypeProtobuf = "application/x-protobuf"
	contentTypeJSON     = "application/json"
)

// otlpRoutes serve POST /v1/metrics: OTLP/HTTP as the OpenTelemetry
// specification writes it (protobuf or JSON, optionally gzip-compressed).
type otlpRoutes struct {
	svc    SpendIngester
	logger *slog.Logger
}

// metrics takes an export request: 200 with an ExportMetricsServiceResponse
// in the request's content type (with partial_success when data points were
// rejected), 400 for a body that does not decode, 413 over the body limit
// (as sent or decompressed), 415 for another content type or encoding,
// 503 with Retry-After when the service
// or the store is full or down. Errors of a protobuf request are a
// google.rpc.Status in protobuf, as the specification asks; those of a JSON
// request (and a 415) the service's usual {"detail": ...}.
func (o otlpRoutes) metrics(w http.ResponseWriter, r *http.Request) {
	contentType, err := otlpContentType(r.Header.Get("Content-Type"))
	if err != nil {
		writeError(w, o.logger, err)
		return
	}
	fail := func(err error) { writeOTLPError(w, o.logger, contentType, err) }
	body, err := readBody(r)
	if err != nil {
		fail(err)
		return
	}
	req, err := decodeOTLPMetrics(body, contentType, r.Header.Get("Content-Encoding"))
	if err != nil {
		fail(err)
		return
	}
	res, err := o.svc.TrackSpend(r.Context(), req)
	if err != nil {
		fail(err)
		return
	}
	resp := &colmetricpb.ExportMetricsServiceResponse{}
	if res.Rejected > 0 {
		resp.PartialSuccess = &colmetricpb.ExportMetricsPartialSuccess{
			RejectedDataPoints: res.Rejected,
			ErrorMessage:       "rejected " + strconv.FormatInt(res.Rejected, 10) + " malformed data points (" + res.Reasons + ")",
		}
	}
	writeOTLP(w, http.StatusOK, contentType, resp)
}

// otlpContentType answers the OTLP content type of a Content-Type header,
// or a 415.
func otlpContentType(header string) (string, error) {
	mt, _, err := mime.ParseMediaType(header)
	if err == nil && (mt == contentTypeProtobuf || mt == contentTypeJSON) {
		return mt, nil
	}
	return "", &httpError{status: http.StatusUnsupportedMediaType,
		detail: "Unsupported Content-Type " + strconv.Quote(header) + ": send " + contentTypeProtobuf + " or " + contentTypeJSON}
}

// decodeOTLPMetrics decodes an export request of contentType sent with
// encoding ("", identity or gzip): a 415 for another encoding, a 413 when
// it decompresses past api.MaxOTLPBodyBytes, a 400 when it does not decode.
// JSON follows the OTLP JSON rules: field names in lowerCamelCase or as in
// the proto, enums by name or number, 64-bit integers as strings or
// numbers, unknown fields ignored.
func decodeOTLPMetrics(body []byte, contentType, encoding string) (*colmetricpb.ExportMetricsServiceRequest, error) {
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "", "identity":
	case "gzip":
		var err error
		if body, err = gunzip(body, api.MaxOTLPBodyBytes); err != nil {
			return nil, err
		}
	default:
		return nil, &httpError{status: http.StatusUnsupportedMediaType,
			detail: "Unsupported Content-Encoding " + strconv.Quote(encoding) + ": send gzip or none"}
	}
	req := &colmetricpb.ExportMetricsServiceRequest{}
	var err error
	if contentType == contentTypeJSON {
		err = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(body, req)
	} else {
		err = proto.Unmarshal(body, req)
	}
	if err != nil {
		return nil, badRequest("Could not decode the OTLP metrics (" + contentType + "): " + err.Error())
	}
	return req, nil
}

// gunzip decompresses body, at most limit bytes of it (a 413 past that: a
// gzip bomb is refused without being inflated).
func gunzip(body []byte, limit int64) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, badRequest("Could not decompress the gzip body: " + err.Error())
	}
	out, err := io.ReadAll(io.LimitReader(zr, limit+1))
	if err != nil {
		return nil, badRequest("Could not decompress the gzip body: " + err.Error())
	}
	if int64(len(out)) > limit {
		he := errTooLarge(limit)
		he.detail += " once decompressed"
		return nil, he
	}
	return out, nil
}

// writeOTLP answers m with status, encoded in contentType.
func writeOTLP(w http.ResponseWriter, status int, contentType string, m proto.Message) {
	var data []byte
	var err error
	if contentType == contentTypeJSON {
		data, err = protojson.Marshal(m)
	} else {
		data, err = proto.Marshal(m)
	}
	if err != nil { // cannot happen with the messages written here
		writeDetail(w, http.StatusInternalServerError, "Could not encode the answer: "+err.Error(), 0)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

// writeOTLPError answers err as writeError does, but for a protobuf
// request as a google.rpc.Status in protobuf, as OTLP/HTTP asks.
func writeOTLPError(w http.ResponseWriter, logger *slog.Logger, contentType string, err error) {
	if contentType != contentTypeProtobuf {
		writeError(w, logger, err)
		return
	}
	a := answerOf(logger, err)
	if a.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(a.retryAfter.Seconds())))
	}
	writeOTLP(w, a.status, contentTypeProtobuf, &status.Status{Code: grpcCode(a.status), Message: a.detail()})
}

// grpcCode answers the gRPC status code of an HTTP status, as the gRPC
// and OTLP specifications pair them.
func grpcCode(httpStatus int) int32 {
	switch httpStatus {
	case http.StatusBadRequest, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
		return 3 // INVALID_ARGUMENT
	case http.StatusUnauthorized:
		return 16 // UNAUTHENTICATED
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return 8 // RESOURCE_EXHAUSTED
	case http.StatusServiceUnavailable:
		return 14 // UNAVAILABLE
	}
	return 13 // INTERNAL
}
