package ort

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync/atomic"
	"time"

	ortgo "github.com/yalue/onnxruntime_go"

	"github.com/tokenflow/tokenflow/internal/param"
)

// Device names an execution target.
type Device string

const (
	CPU  Device = "cpu"
	CUDA Device = "cuda"
)

// ParseDevice checks a value of the device setting; the error is a
// *param.Error.
func ParseDevice(s string) (Device, error) {
	switch Device(s) {
	case CPU, CUDA:
		return Device(s), nil
	}
	return "", param.Errorf("device", s, "want cpu or cuda")
}

// SessionOptions configures a session. Inputs and Outputs name the graph's
// inputs and outputs in the order Run takes and returns them.
type SessionOptions struct {
	Device  Device // "" means CPU; CUDA runs on device 0
	Threads int    // intra-op threads; 0 lets ONNX Runtime choose
	Inputs  []string
	Outputs []string
	// Config holds extra session configuration entries
	// (e.g. "session.disable_prepacking": "1").
	Config map[string]string
	// NoArena turns off ONNX Runtime's CPU memory arena: activations are
	// freed after each run instead of kept for the next, for graphs whose
	// activations are large and whose runs are few (the VAE).
	NoArena bool
}

// Session is a loaded graph ready to run.
type Session struct {
	s       *ortgo.DynamicAdvancedSession
	inputs  []string
	outputs []string
}

// ErrCanceled is returned by Run when its context ends mid-call.
var ErrCanceled = errors.New("run canceled")

// NewSession loads a serialized ModelProto.
func NewSession(model []byte, o SessionOptions) (*Session, error) {
	return newSession(o, func(so *ortgo.SessionOptions) (*ortgo.DynamicAdvancedSession, error) {
		return ortgo.NewDynamicAdvancedSessionWithONNXData(model, o.Inputs, o.Outputs, so)
	})
}

// NewSessionFromFile loads a model file; external data is resolved relative
// to the file's folder.
func NewSessionFromFile(path string, o SessionOptions) (*Session, error) {
	s, err := newSession(o, func(so *ortgo.SessionOptions) (*ortgo.DynamicAdvancedSession, error) {
		return ortgo.NewDynamicAdvancedSession(path, o.Inputs, o.Outputs, so)
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func newSession(o SessionOptions, create func(*ortgo.SessionOptions) (*ortgo.DynamicAdvancedSession, error)) (*Session, error) {
	if !ortgo.IsInitialized() {
		return nil, fmt.Errorf("ONNX Runtime is not initialised: call ort.Init first")
	}
	if len(o.Inputs) == 0 || len(o.Outputs) == 0 {
		return nil, fmt.Errorf("session needs input and output names")
	}
	so, err := ortgo.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("session options: %s", oneLine(err))
	}
	defer so.Destroy()
	if o.Threads > 0 {
		if err := errors.Join(so.SetIntraOpNumThreads(o.Threads), so.SetInterOpNumThreads(1)); err != nil {
			return nil, fmt.Errorf("set threads: %s", oneLine(err))
		}
	}
	if o.NoArena {
		if err := so.SetCpuMemArena(false); err != nil {
			return nil, fmt.Errorf("disable memory arena: %s", oneLine(err))
		}
	}
	for k, v := range o.Config {
		if err := so.AddSessionConfigEntry(k, v); err != nil {
			return nil, fmt.Errorf("session config %s=%s: %s", k, v, oneLine(err))
		}
	}
	switch o.Device {
	case "", CPU:
	case CUDA:
		if err := appendCUDA(so); err != nil {
			return nil, cudaSessionError(err)
		}
	default:
		return nil, fmt.Errorf("unknown device %q", o.Device)
	}
	if err := enableProfile(so, o.Outputs[0]); err != nil {
		return nil, err
	}
	start := time.Now()
	s, err := create(so)
	createNanos.Add(int64(time.Since(start)))
	if err != nil {
		return nil, fmt.Errorf("create session: %s", oneLine(err))
	}
	return &Session{s: s, inputs: o.Inputs, outputs: o.Outputs}, nil
}

// Close releases the session.
func (s *Session) Close() error {
	if s == nil || s.s == nil {
		return nil
	}
	err := s.s.Destroy()
	s.s = nil
	return err
}

// Inputs and Outputs are the names the session was created with.
func (s *Session) Inputs() []string  { return s.inputs }
func (s *Session) Outputs() []string { return s.outputs }

// Run evaluates the graph on inputs (in Inputs order) and returns the outputs
// (in Outputs order). When ctx ends during the call, ONNX Runtime is asked to
// stop and Run returns an error wrapping ErrCanceled.
func (s *Session) Run(ctx context.Context, inputs ...Tensor) ([]Tensor, error) {
	if s == nil || s.s == nil {
		return nil, errors.New("run: session is closed")
	}
	if len(inputs) != len(s.inputs) {
		return nil, fmt.Errorf("run: %d inputs given, graph takes %d (%v)", len(inputs), len(s.inputs), s.inputs)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCanceled, err)
	}
	ins, outs := make([]ortgo.Value, len(inputs)), make([]ortgo.Value, len(s.outputs))
	defer func() {
		for _, v := range slices.Concat(ins, outs) {
			release(v)
		}
	}()
	for i, t := range inputs {
		v, err := t.value()
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", s.inputs[i], err)
		}
		ins[i] = v
	}
	ro, err := ortgo.NewRunOptions()
	if err != nil {
		return nil, fmt.Errorf("run options: %s", oneLine(err))
	}
	defer ro.Destroy()
	// Terminate may run on another goroutine while RunWithOptions works;
	// before ro is destroyed, wait for it if it has started.
	terminated := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(terminated)
		ro.Terminate()
	})
	start := time.Now()
	err = s.s.RunWithOptions(ins, outs, ro)
	runNanos.Add(int64(time.Since(start)))
	runCalls.Add(1)
	if !stop() {
		<-terminated
	}
	if err != nil {
		for i, v := range outs {
			if v != nil && isNil(v) {
				// ONNX Runtime computed the outputs, but onnxruntime_go
				// could not convert this one and left a typed nil.
				err = outputError(s.outputs[i], err)
				break
			}
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", ErrCanceled, ctx.Err())
		}
		return nil, fmt.Errorf("run: %s", oneLine(err))
	}
	result := make([]Tensor, len(outs))
	for i, v := range outs {
		if result[i], err = fromValue(v); err != nil {
			return nil, fmt.Errorf("output %s: %w", s.outputs[i], err)
		}
	}
	return result, nil
}

// outputError explains an output onnxruntime_go failed to convert.
func outputError(name string, err error) error {
	if errors.Is(err, ortgo.ZeroShapeLengthError) {
		return fmt.Errorf("output %s is a rank-0 (scalar) tensor, which onnxruntime_go cannot return: give it shape [1] in the graph", name)
	}
	return fmt.Errorf("output %s has an element type onnxruntime_go cannot return (%s): cast it to float32 in the graph", name, oneLine(err))
}

// isNil reports whether v is nil or holds a nil pointer (onnxruntime_go
// returns typed nils from failed conversions).
func isNil(v ortgo.Value) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

// release destroys v unless it is nil.
func release(v ortgo.Value) {
	if !isNil(v) {
		v.Destroy()
	}
}

var runNanos, runCalls atomic.Int64

// Stats reports the time spent inside ONNX Runtime's Run and the number of
// calls since the process started, for the "share outside ORT" figures.
func Stats() (inRun time.Duration, calls int64) {
	return time.Duration(runNanos.Load()), runCalls.Load()
}

var createNanos atomic.Int64

// CreateTime is the time spent creating sessions (loading weights and
// optimizing graphs) since the process started.
func CreateTime() time.Duration { return time.Duration(createNanos.Load()) }
