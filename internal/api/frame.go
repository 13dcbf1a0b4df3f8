package api

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
)

// AppendFrame encodes msg as a frame of type t and appends it to dst, so a
// sender can batch several frames into one write.
func AppendFrame(dst []byte, t FrameType, msg any) ([]byte, error) {
	body, ok := encodeBinary(nil, msg)
	if !ok {
		var err error
		if body, err = json.Marshal(msg); err != nil {
			return dst, fmt.Errorf("encode frame %d: %w", t, err)
		}
	}
	if len(body)+1 > MaxFrame {
		return dst, fmt.Errorf("frame %d is %d bytes, over the %d limit", t, len(body)+1, MaxFrame)
	}
	var hdr [5]byte
	binary.BigEndian.PutUint32(hdr[:4], uint32(len(body)+1))
	hdr[4] = byte(t)
	dst = append(dst, hdr[:]...)
	return append(dst, body...), nil
}

// ReadFrame reads one frame of at most MaxFrame bytes. The body is freshly
// allocated and owned by the caller. hdr is scratch space of at least 5
// bytes, so a reader loop does not allocate a header per frame.
func ReadFrame(r io.Reader, hdr []byte) (FrameType, []byte, error) {
	return ReadFrameLimit(r, hdr, MaxFrame)
}

// FrameTooLargeError is a frame longer than the reader accepts. Nothing of
// its body was read.
type FrameTooLargeError struct {
	Type  FrameType
	Size  int
	Limit int
}

func (e *FrameTooLargeError) Error() string {
	return fmt.Sprintf("frame %d is %d bytes, over the %d-byte limit", e.Type, e.Size, e.Limit)
}

// ReadFrameLimit is ReadFrame with a lower bound than MaxFrame: a frame
// over limit is a *FrameTooLargeError, and its body is not allocated.
func ReadFrameLimit(r io.Reader, hdr []byte, limit int) (FrameType, []byte, error) {
	if _, err := io.ReadFull(r, hdr[:5]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if n < 1 {
		return 0, nil, fmt.Errorf("frame length %d is outside 1..%d: the peer does not speak the Ward agent protocol", n, MaxFrame)
	}
	if int64(n) > int64(min(limit, MaxFrame)) {
		return 0, nil, &FrameTooLargeError{Type: FrameType(hdr[4]), Size: int(n), Limit: min(limit, MaxFrame)}
	}
	body := make([]byte, n-1)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, fmt.Errorf("read frame body: %w", err)
	}
	return FrameType(hdr[4]), body, nil
}

// DecodeFrame decodes a frame body into msg, naming the frame on failure.
func DecodeFrame(t FrameType, body []byte, msg any) error {
	if ok, err := decodeBinary(body, msg); ok {
		if err != nil {
			return fmt.Errorf("decode frame %d: %w", t, err)
		}
		return nil
	}
	if err := decodeJSON(body, msg, true); err != nil {
		return fmt.Errorf("decode frame %d: %w", t, err)
	}
	return nil
}
