package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/wardcluster/ward/internal/runas"
	"github.com/wardcluster/ward/internal/staging"
)

// An agent with --run-as-user runs as root, but a job's files belong to the
// task's account, and the agent must create, read and remove them with that
// account's rights, never root's: a submitter could otherwise name a --dir,
// or leave a symbolic link in one, that leads root to write or read any file
// on the node. So the agent moves and verifies the bytes (inputs in a
// directory of its own, outputs streamed), and a short-lived helper, this
// executable's hidden StageCommand started with the account's credential,
// makes, lists, reads and removes the files: the kernel checks each access
// as the account's. Root needs no capability over files for this (no
// CAP_CHOWN, CAP_DAC_OVERRIDE or CAP_FOWNER), only to switch accounts.

// StageCommand is the hidden subcommand that runs RunStageHelper.
const StageCommand = "agent-stage"

// stageVerb is what one helper run does.
type stageVerb string

const (
	// stageScratch ROOT: make a new scratch directory (0700, unpredictable
	// name) in ROOT and print its path.
	stageScratch stageVerb = "scratch"
	// stageMkdir DIR: make DIR (0700) and its parents if missing.
	stageMkdir stageVerb = "mkdir"
	// stageRemove DIR: remove DIR and everything in it.
	stageRemove stageVerb = "rm"
	// stagePut DIR REL MODE: write standard input to DIR/REL (through a
	// temporary file in its directory, renamed once complete) with MODE,
	// making the directories on the way.
	stagePut stageVerb = "put"
	// stageMatch DIR GLOB...: print the regular files in DIR that the
	// output patterns match (staging.MatchOutputs), each followed by NUL.
	stageMatch stageVerb = "match"
	// stageGet DIR REL: copy the regular file DIR/REL to standard output.
	stageGet stageVerb = "get"
)

// scratchPrefix begins the name of every run-as scratch directory.
const scratchPrefix = "ward-attempt-"

// RunStageHelper is `ward agent-stage VERB ARGS...`, run by the agent as a
// task's account; see StageCommand.
func RunStageHelper(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) < 2 {
		return errors.New("usage: ward " + StageCommand + " scratch ROOT | mkdir DIR | rm DIR | put DIR REL MODE | match DIR GLOB... | get DIR REL (run by the agent, not by hand)")
	}
	verb, dir := stageVerb(args[0]), args[1]
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("working directory %q is not absolute", dir)
	}
	switch {
	case verb == stageScratch && len(args) == 2:
		d, err := os.MkdirTemp(dir, scratchPrefix+"*")
		if err != nil {
			return err
		}
		_, err = io.WriteString(stdout, d)
		return err
	case verb == stageMkdir && len(args) == 2:
		return os.MkdirAll(dir, 0o700)
	case verb == stageRemove && len(args) == 2:
		if !strings.HasPrefix(filepath.Base(dir), scratchPrefix) {
			return fmt.Errorf("%s is not a scratch directory", dir)
		}
		return os.RemoveAll(dir)
	case verb == stagePut && len(args) == 4:
		rel, err := staging.CleanRemote(args[2])
		if err != nil {
			return err
		}
		mode, err := strconv.ParseUint(args[3], 8, 32)
		if err != nil || mode&^0o777 != 0 {
			return fmt.Errorf("mode %q is not an octal permission", args[3])
		}
		return putFile(filepath.Join(dir, filepath.FromSlash(rel)), stdin, os.FileMode(mode))
	case verb == stageMatch && len(args) >= 3:
		files, err := staging.MatchOutputs(dir, args[2:])
		if err != nil {
			return err
		}
		for _, f := range files {
			if _, err := io.WriteString(stdout, f+"\x00"); err != nil {
				return err
			}
		}
		return nil
	case verb == stageGet && len(args) == 3:
		rel, err := staging.CleanRemote(args[2])
		if err != nil {
			return err
		}
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return err
		}
		defer f.Close()
		if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", rel)
		}
		_, err = io.Copy(stdout, f)
		return err
	}
	return fmt.Errorf("%s %s with %d arguments is not a staging step", StageCommand, verb, len(args)-1)
}

// putFile writes r to dst through a temporary file in its directory, so
// dst is either absent or complete.
func putFile(dst string, r io.Reader, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(dst), ".ward-input-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), mode)
	}
	if err == nil {
		err = os.Rename(f.Name(), dst)
	}
	return err
}

// stageAs runs one helper step as acct, with stdin and stdout; its error
// names the account and says what the helper said.
func stageAs(acct runas.Account, stdin io.Reader, stdout io.Writer, verb stageVerb, args ...string) error {
	cmd, errb, err := stageCmd(acct, verb, args...)
	if err != nil {
		return err
	}
	cmd.Stdin, cmd.Stdout = stdin, stdout
	return stageErr(acct, cmd.Run(), errb)
}

// stageStream starts a helper step as acct and returns its standard
// output; Close waits for the helper and returns its error.
func stageStream(acct runas.Account, verb stageVerb, args ...string) (io.ReadCloser, error) {
	cmd, errb, err := stageCmd(acct, verb, args...)
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, stageErr(acct, err, errb)
	}
	return &helperOutput{ReadCloser: out, cmd: cmd, acct: acct, errb: errb}, nil
}

// helperOutput is a helper's standard output.
type helperOutput struct {
	io.ReadCloser
	cmd  *exec.Cmd
	acct runas.Account
	errb *bytes.Buffer
}

func (h *helperOutput) Close() error {
	h.ReadCloser.Close()
	return stageErr(h.acct, h.cmd.Wait(), h.errb)
}

func stageCmd(acct runas.Account, verb stageVerb, args ...string) (*exec.Cmd, *bytes.Buffer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("find this executable to handle files as %s: %w", acct.Name, err)
	}
	cmd := exec.Command(exe, append([]string{StageCommand, string(verb)}, args...)...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + acct.Home, "USER=" + acct.Name, "LOGNAME=" + acct.Name}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: acct.Credential(), Pdeathsig: syscall.SIGKILL}
	errb := &bytes.Buffer{}
	cmd.Stderr = &limitedBuffer{b: errb, max: 4 << 10}
	return cmd, errb, nil
}

func stageErr(acct runas.Account, err error, errb *bytes.Buffer) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, os.ErrPermission) {
		exe, _ := os.Executable()
		return fmt.Errorf("account %s cannot run %s, which handles a job's files as the task's account: make it and its directories executable by others (chmod o+x), as in a package install to /usr/bin", acct.Name, exe)
	}
	msg := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(errb.String()), "error: "))
	if msg == "" {
		msg = err.Error()
	}
	return fmt.Errorf("as %s: %s", acct.Name, msg)
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// CheckStageHelper refuses to run tasks as their submitters when their
// accounts could not start the staging helper (this executable): every
// directory on its path and the file itself must be executable by others.
func CheckStageHelper() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("--run-as-user: find this executable: %w", err)
	}
	for p := exe; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("--run-as-user: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("--run-as-user: tasks' accounts run %s to handle their jobs' files, but %s is not executable by others: run chmod o+x %s, or install ward where every user can run it (the packages put it in /usr/bin)", exe, p, p)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}
