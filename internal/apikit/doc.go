// Package apikit is the request and response kit of Runnel's HTTP API
// dialects (Runnel's own /api/v1 and the image build seed's /v1, and the next
// ones): the route table and its mux (authentication hook, body limits,
// request ids, access log, panic recovery, canonical paths), strict JSON
// and query decoding whose errors name the field, the error type every
// handler returns, and the one mapping of domain errors to HTTP statuses.
//
// A dialect declares its routes as []Route whose handlers return errors, and
// writes its own success bodies and error bodies (Runnel's envelope is here,
// for the dialects that share it). The kit holds no business rule.
package apikit
