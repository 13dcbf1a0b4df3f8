package tpmkey

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wardcluster/ward/internal/api"
)

func TestDeviceErrors(t *testing.T) {
	dir := t.TempDir()
	t.Run("missing device", func(t *testing.T) {
		dev := filepath.Join(dir, "tpmrm0")
		_, err := Source{Device: dev, Dir: dir}.Create()
		want := "no TPM at " + dev + ": the node has no TPM 2.0, or the kernel resource manager is not loaded"
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "use --key file, or pass --tpm-device") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("not a device", func(t *testing.T) {
		dev := filepath.Join(dir, "regular")
		os.WriteFile(dev, nil, 0o600)
		_, err := Source{Device: dev, Dir: dir}.Open()
		// Open checks the blobs first; Create reaches the device.
		if err == nil {
			t.Fatal("no error")
		}
		_, err = Source{Device: dev, Dir: dir}.Create()
		if err == nil || !strings.Contains(err.Error(), dev+" is not a TPM") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("permission denied", func(t *testing.T) {
		dev := filepath.Join(dir, "denied")
		os.WriteFile(dev, nil, 0o600)
		err := permissionError(dev, os.ErrPermission)
		if api.CodeOf(err) != api.CodePermissionDenied || !strings.Contains(err.Error(), "permission denied opening the TPM at "+dev) ||
			!strings.Contains(err.Error(), "chmod 660 "+dev) {
			t.Fatalf("error %v", err)
		}
		os.Chmod(dev, 0o660)
		if err := permissionError(dev, os.ErrPermission); !strings.Contains(err.Error(), "usermod -aG") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		port := freePort(t)
		dev := "tcp://127.0.0.1:" + port
		_, err := Source{Device: dev, Dir: dir}.Create()
		if err == nil || !strings.Contains(err.Error(), "no TPM simulator listening at "+dev) || api.CodeOf(err) != api.CodeUnavailable {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("bad tcp address", func(t *testing.T) {
		for _, dev := range []string{"tcp://127.0.0.1", "tcp://:2321", "tcp://127.0.0.1:99999", "tcp://h:1/path"} {
			_, err := Source{Device: dev, Dir: dir}.Create()
			if api.CodeOf(err) != api.CodeInvalidArgument {
				t.Errorf("%s: %v", dev, err)
			}
		}
	})
	t.Run("not a TPM", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
				c.Close()
			}
		}()
		_, err = Source{Device: "tcp://" + ln.Addr().String(), Dir: dir}.Create()
		if err == nil || !strings.Contains(err.Error(), "does not answer like a TPM 2.0") {
			t.Fatalf("error %v", err)
		}
	})
	if _, err := os.Stat(filepath.Join(dir, PrivateBlobFile)); err == nil {
		t.Fatal("a failed Create wrote blobs")
	}
}
