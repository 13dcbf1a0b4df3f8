// Package api is Ward's wire contract: the JSON messages of the HTTP API and
// the agent session, and the stable error codes clients react to. It imports
// nothing else from Ward, so every role can depend on it.
package api

import (
	"errors"
	"fmt"
	"net/http"
)

// Code is a stable, machine-readable error code. Clients switch on codes,
// never on message text.
type Code string

// Stable error codes. Adding one is fine; renaming one breaks clients.
const (
	CodeInvalidArgument    Code = "INVALID_ARGUMENT"
	CodeNotFound           Code = "NOT_FOUND"
	CodeAlreadyExists      Code = "ALREADY_EXISTS"
	CodePermissionDenied   Code = "PERMISSION_DENIED"
	CodeUnauthenticated    Code = "UNAUTHENTICATED"
	CodeRateLimited        Code = "RATE_LIMITED"
	CodeFailedPrecondition Code = "FAILED_PRECONDITION"
	CodeUnavailable        Code = "UNAVAILABLE"
	CodeInternal           Code = "INTERNAL"
	// CodeWrongPort: an API request reached the public port; the message
	// names the cluster port.
	CodeWrongPort Code = "WRONG_PORT"

	// Join and token refusals.
	CodeJoinStringMalformed Code = "JOIN_STRING_MALFORMED"
	CodeTokenInvalid        Code = "TOKEN_INVALID"
	CodeTokenExpired        Code = "TOKEN_EXPIRED"
	CodeTokenUsed           Code = "TOKEN_USED"
	CodeTokenRevoked        Code = "TOKEN_REVOKED"
	CodeCSRInvalid          Code = "CSR_INVALID"
	CodeCSRCARequested      Code = "CSR_CA_REQUESTED"
	CodeCSRWeakKey          Code = "CSR_WEAK_KEY"
	CodeCSRSANNotAllowed    Code = "CSR_SAN_NOT_ALLOWED"
	CodeNodeNameInUse       Code = "NODE_NAME_IN_USE"
	CodePinMismatch         Code = "PIN_MISMATCH"

	// Certificates.
	CodeCertRevoked        Code = "CERT_REVOKED"
	CodeCertExpired        Code = "CERT_EXPIRED"
	CodeGraceWindowExpired Code = "GRACE_WINDOW_EXPIRED"
	CodeKeyPermissions     Code = "KEY_PERMISSIONS"

	// Jobs.
	CodeJobUnschedulable Code = "JOB_UNSCHEDULABLE"
	CodeJobTooLarge      Code = "JOB_TOO_LARGE"
	// CodeMaintenance: the cluster is in maintenance mode and takes no new
	// work from users who are not admins; the message carries the admin's.
	CodeMaintenance Code = "MAINTENANCE"

	// File staging. A file whose bytes do not match the SHA-256 it was
	// sent with is discarded (CHECKSUM_MISMATCH); a file or a job's files
	// over a size limit are refused (FILE_TOO_LARGE), naming the setting.
	CodeChecksumMismatch Code = "CHECKSUM_MISMATCH"
	CodeFileTooLarge     Code = "FILE_TOO_LARGE"

	// Users and roles.
	CodeForbiddenNotOwner Code = "FORBIDDEN_NOT_OWNER"  // a submitter reaching another user's job
	CodeUserUnknownOnNode Code = "USER_UNKNOWN_ON_NODE" // --run-as-user: no local account for the job's user

	// Limits a peer ran into. Each message names the limit and the
	// coordinator setting that raises it.
	CodeRequestTooLarge  Code = "REQUEST_TOO_LARGE"  // a request body over max_request_bytes
	CodeHeadersTooLarge  Code = "HEADERS_TOO_LARGE"  // request headers over max_header_bytes
	CodeFrameTooLarge    Code = "FRAME_TOO_LARGE"    // an agent session frame over max_frame_bytes
	CodeSessionQueueFull Code = "SESSION_QUEUE_FULL" // a session's queued bytes over session_queue_bytes
	CodeConnLimit        Code = "CONNECTION_LIMIT"   // a listener's connection cap (logged; the connection is closed)
	CodeHandshakeLimit   Code = "HANDSHAKE_LIMIT"    // a listener's cap on TLS handshakes in flight (logged)

	// CodeStoreUnavailable: the coordinator's store cannot write for now
	// (a full disk, an etcd outage). New work is refused; what was already
	// accepted is kept and written once the store writes again.
	CodeStoreUnavailable Code = "STORE_UNAVAILABLE"
)

// Error is a failure a user can meet: what failed, and the fix. Message and
// Fix are shown to users; Cause is for logs only and never leaves the
// process, so internal detail and secrets stay out of responses.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
	// RetryAfter, on RATE_LIMITED and STORE_UNAVAILABLE, is when a retry
	// may succeed.
	RetryAfter Duration `json:"retry_after,omitempty"`
	Cause      error    `json:"-"`
}

func (e *Error) Error() string {
	s := string(e.Code) + ": " + e.Message
	if e.Fix != "" {
		s += " (fix: " + e.Fix + ")"
	}
	return s
}

// Unwrap exposes the internal cause to errors.Is/As inside the process.
func (e *Error) Unwrap() error { return e.Cause }

// Errorf builds an *Error with a fix and a formatted message.
func Errorf(code Code, fix, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Fix: fix}
}

// WithCause returns a copy of e carrying cause for logs.
func (e *Error) WithCause(cause error) *Error {
	c := *e
	c.Cause = cause
	return &c
}

// CodeOf returns the code of the first *Error in err's chain, or
// CodeInternal when there is none.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// AsError returns the first *Error in err's chain, or wraps err as an
// internal error whose message hides the cause.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Message: "internal error; the coordinator log has the detail", Cause: err}
}

// ErrorBody is the JSON body of every failed HTTP response.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// HTTPStatus maps a code to the HTTP status the API answers with.
func HTTPStatus(c Code) int {
	switch c {
	case CodeInvalidArgument, CodeJoinStringMalformed, CodeCSRInvalid, CodeCSRCARequested,
		CodeCSRWeakKey, CodeCSRSANNotAllowed, CodeJobTooLarge:
		return http.StatusBadRequest
	case CodeRequestTooLarge, CodeFileTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeChecksumMismatch:
		return http.StatusUnprocessableEntity
	case CodeHeadersTooLarge:
		return http.StatusRequestHeaderFieldsTooLarge
	case CodeNotFound:
		return http.StatusNotFound
	case CodeAlreadyExists, CodeNodeNameInUse:
		return http.StatusConflict
	case CodePermissionDenied, CodeForbiddenNotOwner:
		return http.StatusForbidden
	case CodeUnauthenticated, CodeTokenInvalid, CodeTokenExpired, CodeTokenUsed, CodeTokenRevoked,
		CodeCertRevoked, CodeCertExpired, CodeGraceWindowExpired:
		return http.StatusUnauthorized
	case CodeRateLimited:
		return http.StatusTooManyRequests
	case CodeFailedPrecondition, CodeJobUnschedulable:
		return http.StatusPreconditionFailed
	case CodeUnavailable, CodeMaintenance, CodeStoreUnavailable:
		return http.StatusServiceUnavailable
	case CodeWrongPort:
		return http.StatusMisdirectedRequest
	}
	return http.StatusInternalServerError
}
