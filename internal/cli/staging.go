package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/wardcluster/ward/internal/api"
	"github.com/wardcluster/ward/internal/staging"
)

// uploadInputs sends each --input file to the coordinator before the job
// is submitted: its SHA-256 first (a read of its own), then its bytes,
// which the coordinator keeps only if they hash the same. A file the
// coordinator already holds is not sent again.
func uploadInputs(ctx context.Context, g *globals, c *client, args []string) ([]api.StagedFile, error) {
	var out []api.StagedFile
	for _, arg := range args {
		local, remote, err := staging.ParseInput(arg)
		if err != nil {
			return nil, api.Errorf(api.CodeInvalidArgument, "use --input LOCAL[:REMOTE]", "%v", err)
		}
		sf, err := uploadInput(ctx, g, c, local, remote)
		if err != nil {
			return nil, err
		}
		out = append(out, sf)
	}
	return out, nil
}

func uploadInput(ctx context.Context, g *globals, c *client, local, remote string) (api.StagedFile, error) {
	bad := func(err error) error {
		return api.Errorf(api.CodeInvalidArgument, "--input names a regular file this user can read", "--input %s: %v", local, err)
	}
	f, err := os.Open(local)
	if err != nil {
		return api.StagedFile{}, bad(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return api.StagedFile{}, bad(err)
	}
	if !fi.Mode().IsRegular() {
		return api.StagedFile{}, bad(fmt.Errorf("not a regular file"))
	}
	sum, size, err := staging.SumFile(f)
	if err != nil {
		return api.StagedFile{}, bad(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return api.StagedFile{}, bad(err)
	}
	if !g.json() && size >= 64<<20 {
		fmt.Fprintf(g.stderr, "sending %s (%d MiB, %s)\n", local, size>>20, sum)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+"/v1/staging/files/"+sum.String()+"?name="+url.QueryEscape(remote), io.LimitReader(f, size))
	if err != nil {
		return api.StagedFile{}, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.sendRequest(ctx, req)
	if err != nil {
		return api.StagedFile{}, err
	}
	resp.Body.Close()
	return api.StagedFile{Path: remote, SHA256: sum.String(), Size: size, Exec: fi.Mode()&0o111 != 0}, nil
}

// fetchedOutput is one file `ward job output` wrote.
type fetchedOutput struct {
	api.OutputFile
	File string `json:"file"` // where it was written
}

func newJobOutputCmd(g *globals) *cobra.Command {
	var task int
	var to string
	cmd := &cobra.Command{
		Use:   "output ID --to DIR",
		Short: "Fetch the files a job's tasks left (--output-file), each verified by its SHA-256",
		Long: `Fetch the files a job's tasks left (ward run --output-file): for each task,
those of its latest attempt that sent any. They go to DIR/task-INDEX/PATH,
or with --task N to DIR/PATH. Each file is verified by its SHA-256 as it
arrives; one that does not match is discarded and the command fails with
CHECKSUM_MISMATCH.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return api.Errorf(api.CodeInvalidArgument, "pass --to DIR", "ward job output needs a directory to write to")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if task >= 0 {
				q.Set("task", strconv.Itoa(task))
			}
			var files []api.OutputFile
			if err := c.do(cmd.Context(), "GET", "/v1/jobs/"+url.PathEscape(args[0])+"/outputs?"+q.Encode(), nil, &files); err != nil {
				return err
			}
			out := []fetchedOutput{}
			var total int64
			for _, f := range files {
				dst, err := outputDest(to, task >= 0, f)
				if err != nil {
					return err
				}
				if err := fetchOutput(cmd.Context(), c, args[0], f, dst); err != nil {
					return err
				}
				out = append(out, fetchedOutput{OutputFile: f, File: dst})
				total += f.Size
			}
			if g.json() {
				return printJSON(g.stdout, out)
			}
			t := newTable(g.stdout, "TASK", "ATTEMPT", "FILE", "SIZE", "SHA256")
			for _, f := range out {
				t.row(f.Task, f.Attempt, f.File, f.Size, f.SHA256)
			}
			if len(out) > 0 {
				t.flush()
			}
			fmt.Fprintf(g.stderr, "%d file(s), %d bytes, verified, in %s\n", len(out), total, to)
			return nil
		},
	}
	cmd.Flags().IntVar(&task, "task", -1, "only this task's files, written straight into --to")
	cmd.Flags().StringVar(&to, "to", "", "directory to write the files to (created if missing)")
	return cmd
}

// outputDest is where a fetched file goes; a path the coordinator sends
// never leaves the directory.
func outputDest(to string, oneTask bool, f api.OutputFile) (string, error) {
	rel, err := staging.CleanRemote(f.Path)
	if err != nil {
		return "", api.Errorf(api.CodeInvalidArgument, "", "the coordinator listed an output path that leaves the directory: %v", err)
	}
	if !oneTask {
		rel = fmt.Sprintf("task-%d/%s", f.Task, rel)
	}
	return filepath.Join(to, filepath.FromSlash(rel)), nil
}

// fetchOutput downloads one file into dst through a temporary file, which
// becomes dst only once its size and SHA-256 are those listed.
func fetchOutput(ctx context.Context, c *client, job string, f api.OutputFile, dst string) error {
	want, err := staging.ParseSum(f.SHA256)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return api.Errorf(api.CodeInvalidArgument, "give --to a directory this user can create and write", "%v", err)
	}
	resp, err := c.send(ctx, "GET", fmt.Sprintf("/v1/jobs/%s/outputs/%d/file?path=%s", url.PathEscape(job), f.Task, url.QueryEscape(f.Path)), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".ward-output-*")
	if err != nil {
		return api.Errorf(api.CodeInvalidArgument, "give --to a directory this user can write", "%v", err)
	}
	defer os.Remove(tmp.Name())
	what := fmt.Sprintf("output %s of task %d", f.Path, f.Task)
	n, got, err := staging.Copy(tmp, resp.Body, f.Size, nil)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil && n == f.Size {
		err = staging.Verify(what, want, got, n)
	} else if err == nil || isTooLarge(err) {
		err = &staging.MismatchError{What: what, Want: want, Got: got, Size: n}
	}
	if e := staging.APIError(err); e != nil {
		return e
	}
	if err != nil {
		return api.Errorf(api.CodeUnavailable, "run ward job output again", "receiving %s: %v", what, err)
	}
	return os.Rename(tmp.Name(), dst)
}

func isTooLarge(err error) bool {
	_, ok := err.(*staging.TooLargeError)
	return ok
}
