package cli

import (
	"github.com/wardcluster/ward/internal/config"
)

// sizeFlag reads a size such as 512MiB or 4GiB into a number of bytes.
type sizeFlag struct{ n *int64 }

func (f sizeFlag) String() string {
	if f.n == nil || *f.n == 0 {
		return "0"
	}
	return config.Size(*f.n).String()
}

func (f sizeFlag) Set(s string) error {
	v, err := config.ParseSize(s)
	if err != nil {
		return err
	}
	*f.n = v
	return nil
}

func (f sizeFlag) Type() string { return "size" }
