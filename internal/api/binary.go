package api

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// The hottest session frames (Assign, Started, Results, Ack) have a compact
// binary body instead of JSON: at tens of thousands of tasks per second,
// JSON decoding was the coordinator's largest cost. Each body starts with
// binaryVersion. Strings are a uvarint length and bytes; numbers are
// varints. Every other frame stays JSON.
const binaryVersion = 1

// binaryMessage is a frame body with its own binary encoding.
type binaryMessage interface {
	appendBinary(b []byte) []byte
	unmarshalBinary(r *binReader) error
}

type binReader struct {
	b   []byte
	err error
}

var errBinShort = errors.New("the frame body ends early")

// Limits on decoded sizes, so a hostile frame cannot make the reader
// allocate without bound (a frame is at most MaxFrame bytes anyway).
const (
	maxBinItems  = 1 << 20
	maxBinString = MaxFrame
)

func (r *binReader) uvarint(limit uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > limit {
		r.err = fmt.Errorf("bad number in the frame body (%d, limit %d)", v, limit)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *binReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errors.New("bad signed number in the frame body")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *binReader) int() int {
	v := r.varint()
	if v < -1<<31 || v > 1<<31-1 {
		r.err = fmt.Errorf("number %d out of range", v)
		return 0
	}
	return int(v)
}

func (r *binReader) string() string {
	n := r.uvarint(maxBinString)
	if r.err != nil || uint64(len(r.b)) < n {
		r.err = errBinShort
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// count reads a list length; each item needs at least min bytes, which
// bounds the allocation by what the body can really hold.
func (r *binReader) count(min int) int {
	n := r.uvarint(maxBinItems)
	if r.err == nil && n*uint64(min) > uint64(len(r.b)) {
		r.err = errBinShort
		return 0
	}
	return int(n)
}

func putString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func putInt(b []byte, v int) []byte { return binary.AppendVarint(b, int64(v)) }

func (a AttemptRef) appendBinary(b []byte) []byte {
	b = putString(b, a.Job)
	b = putInt(b, a.Task)
	return putInt(b, a.Attempt)
}

func (a *AttemptRef) read(r *binReader) {
	a.Job = r.string()
	a.Task = r.int()
	a.Attempt = r.int()
}

func (m *Assign) appendBinary(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(m.Jobs)))
	for _, j := range m.Jobs {
		b = putString(b, j.Job)
		b = binary.AppendUvarint(b, uint64(len(j.Argv)))
		for _, a := range j.Argv {
			b = putString(b, a)
		}
		b = binary.AppendUvarint(b, uint64(len(j.Env)))
		for k, v := range j.Env {
			b = putString(b, k)
			b = putString(b, v)
		}
		b = putString(b, j.Dir)
		b = putInt(b, j.Slots)
		b = binary.AppendVarint(b, int64(j.Timeout))
		b = appendStaging(b, j.Staging)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Tasks)))
	for _, t := range m.Tasks {
		b = t.appendBinary(b)
	}
	// Optional trailers. First each job's user, in order (read by
	// --run-as-user agents); it is also written, empty, when the second
	// follows. Then the jobs with a setup or teardown, by index. Frames
	// without either stay as older agents read them.
	var envs []int
	for i := range m.Jobs {
		if m.Jobs[i].Setup != "" || m.Jobs[i].Teardown != "" {
			envs = append(envs, i)
		}
	}
	if len(envs) > 0 || slices.ContainsFunc(m.Jobs, func(j AssignJob) bool { return j.User != "" }) {
		b = binary.AppendUvarint(b, uint64(len(m.Jobs)))
		for _, j := range m.Jobs {
			b = putString(b, j.User)
		}
	}
	if len(envs) > 0 {
		b = binary.AppendUvarint(b, uint64(len(envs)))
		for _, i := range envs {
			b = binary.AppendUvarint(b, uint64(i))
			b = putString(b, m.Jobs[i].Setup)
			b = putString(b, m.Jobs[i].Teardown)
		}
	}
	return b
}

func (m *Assign) unmarshalBinary(r *binReader) error {
	m.Jobs = make([]AssignJob, r.count(5))
	for i := range m.Jobs {
		j := &m.Jobs[i]
		j.Job = r.string()
		j.Argv = make([]string, r.count(1))
		for k := range j.Argv {
			j.Argv[k] = r.string()
		}
		if n := r.count(2); n > 0 {
			j.Env = make(map[string]string, n)
			for range n {
				k := r.string()
				j.Env[k] = r.string()
			}
		}
		j.Dir = r.string()
		j.Slots = r.int()
		j.Timeout = Duration(r.varint())
		j.Staging = r.staging()
	}
	m.Tasks = make([]AttemptRef, r.count(3))
	for i := range m.Tasks {
		m.Tasks[i].read(r)
	}
	if r.err == nil && len(r.b) > 0 {
		if n := r.count(1); r.err == nil && n != len(m.Jobs) {
			return fmt.Errorf("the frame names users for %d jobs, but carries %d", n, len(m.Jobs))
		}
		for i := range m.Jobs {
			m.Jobs[i].User = r.string()
		}
	}
	if r.err == nil && len(r.b) > 0 {
		for range r.count(3) {
			i := int(r.uvarint(uint64(len(m.Jobs))))
			setup, teardown := r.string(), r.string()
			if r.err == nil && i < len(m.Jobs) {
				m.Jobs[i].Setup, m.Jobs[i].Teardown = setup, teardown
			}
		}
	}
	return r.err
}

// appendStaging writes a job's files as a JSON string, empty for none: one
// byte for the jobs that have no files, and the rare ones that do are not
// on the hot path.
func appendStaging(b []byte, st *Staging) []byte {
	if st == nil {
		return putString(b, "")
	}
	js, _ := json.Marshal(st)
	return putString(b, string(js))
}

func (r *binReader) staging() *Staging {
	s := r.string()
	if s == "" || r.err != nil {
		return nil
	}
	var st Staging
	if err := json.Unmarshal([]byte(s), &st); err != nil {
		r.err = fmt.Errorf("staging in an assignment: %w", err)
		return nil
	}
	return &st
}

func (m *Started) appendBinary(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(m.Refs)))
	for _, s := range m.Refs {
		b = s.AttemptRef.appendBinary(b)
		b = binary.AppendVarint(b, int64(s.At))
	}
	return b
}

func (m *Started) unmarshalBinary(r *binReader) error {
	m.Refs = make([]StartedRef, r.count(4))
	for i := range m.Refs {
		m.Refs[i].AttemptRef.read(r)
		m.Refs[i].At = Nanos(r.varint())
	}
	return r.err
}

func (m *Results) appendBinary(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(m.Results)))
	for _, t := range m.Results {
		b = t.AttemptRef.appendBinary(b)
		b = putInt(b, t.ExitCode)
		b = putString(b, t.Reason)
		b = putString(b, t.Error)
		b = binary.AppendVarint(b, int64(t.Started))
		b = binary.AppendVarint(b, int64(t.Ended))
	}
	// An optional trailer, sent only to coordinators that read it
	// (Welcome.ResultAccounts): each result's account, in order.
	if slices.ContainsFunc(m.Results, func(t TaskResult) bool { return t.Account != "" }) {
		b = binary.AppendUvarint(b, uint64(len(m.Results)))
		for _, t := range m.Results {
			b = putString(b, t.Account)
		}
	}
	return b
}

func (m *Results) unmarshalBinary(r *binReader) error {
	m.Results = make([]TaskResult, r.count(8))
	for i := range m.Results {
		t := &m.Results[i]
		t.AttemptRef.read(r)
		t.ExitCode = r.int()
		t.Reason = r.string()
		t.Error = r.string()
		t.Started = Nanos(r.varint())
		t.Ended = Nanos(r.varint())
	}
	if r.err == nil && len(r.b) > 0 {
		if n := r.count(1); r.err == nil && n != len(m.Results) {
			return fmt.Errorf("the frame names accounts for %d results, but carries %d", n, len(m.Results))
		}
		for i := range m.Results {
			m.Results[i].Account = r.string()
		}
	}
	return r.err
}

func (m *Ack) appendBinary(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(m.Refs)))
	for _, a := range m.Refs {
		b = a.appendBinary(b)
	}
	return b
}

func (m *Ack) unmarshalBinary(r *binReader) error {
	m.Refs = make([]AttemptRef, r.count(3))
	for i := range m.Refs {
		m.Refs[i].read(r)
	}
	return r.err
}

// encodeBinary appends a binary body for msg if it has one.
func encodeBinary(dst []byte, msg any) ([]byte, bool) {
	bm, ok := asBinary(msg)
	if !ok {
		return dst, false
	}
	dst = append(dst, binaryVersion)
	return bm.appendBinary(dst), true
}

// decodeBinary decodes a binary body into msg; ok is false when msg has
// no binary form.
func decodeBinary(body []byte, msg any) (ok bool, err error) {
	bm, ok := asBinary(msg)
	if !ok {
		return false, nil
	}
	if len(body) == 0 || body[0] != binaryVersion {
		return true, fmt.Errorf("frame body version %v is not one this Ward reads (%d)", firstByte(body), binaryVersion)
	}
	r := &binReader{b: body[1:]}
	if err := bm.unmarshalBinary(r); err != nil {
		return true, err
	}
	if len(r.b) != 0 {
		return true, fmt.Errorf("%d bytes left over at the end of the frame body", len(r.b))
	}
	return true, nil
}

func firstByte(b []byte) any {
	if len(b) == 0 {
		return "none"
	}
	return b[0]
}

// asBinary accepts a message or a pointer to one.
func asBinary(msg any) (binaryMessage, bool) {
	switch m := msg.(type) {
	case Assign:
		return &m, true
	case Started:
		return &m, true
	case Results:
		return &m, true
	case Ack:
		return &m, true
	case binaryMessage:
		return m, true
	}
	return nil, false
}
