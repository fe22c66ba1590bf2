package pnp

import (
	"fmt"
	"math"
	"reflect"
	"testing"
)

// leading returns DDIM 'leading' timesteps with steps_offset 1, descending:
// t_i = (T-1-i)*(1000/T) + 1 (MANIFEST, "Timesteps / scheduler").
func leading(T int) []int {
	ts := make([]int, T)
	for i := range ts {
		ts[i] = (T-1-i)*(1000/T) + 1
	}
	return ts
}

func TestNewSchedule(t *testing.T) {
	ts10 := leading(10) // [901 801 ... 1], the conformance fixture's
	ts50 := leading(50) // [981 961 ... 1]
	tests := []struct {
		name         string
		ts           []int
		attnT, convT float64
		wantQK       []int
		wantConv     []int
	}{
		{
			// tokenflow_inv10: edit.qk_injection_timesteps and
			// edit.conv_injection_timesteps.
			name: "fixture T=10", ts: ts10, attnT: 0.5, convT: 0.8,
			wantQK:   []int{901, 801, 701, 601, 501},
			wantConv: []int{901, 801, 701, 601, 501, 401, 301, 201},
		},
		{
			// Official defaults: int(50*0.5) = 25, int(50*0.8) = 40.
			name: "defaults T=50", ts: ts50, attnT: 0.5, convT: 0.8,
			wantQK: ts50[:25], wantConv: ts50[:40],
		},
		{
			// float64 product then truncation: 50*0.58 = 28.999999999999996
			// in IEEE double, and Python's int() gives 28, not 29.
			name: "truncation like Python", ts: ts50, attnT: 0.58, convT: 0.7,
			wantQK: ts50[:28], wantConv: ts50[:35],
		},
		{
			// 10*0.7 and 10*0.3 round to exactly 7.0 and 3.0 in double.
			name: "exact products", ts: ts10, attnT: 0.7, convT: 0.3,
			wantQK: ts10[:7], wantConv: ts10[:3],
		},
		{name: "off", ts: ts10, attnT: 0, convT: 0, wantQK: []int{}, wantConv: []int{}},
		{name: "all", ts: ts10, attnT: 1, convT: 1, wantQK: ts10, wantConv: ts10},
		{name: "below one step", ts: ts10, attnT: 0.09, convT: 0.1, wantQK: []int{}, wantConv: []int{901}},
		{name: "no timesteps", ts: nil, attnT: 0.5, convT: 0.8, wantQK: []int{}, wantConv: []int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NewSchedule(tt.ts, tt.attnT, tt.convT)
			if !reflect.DeepEqual(got.QKSteps, tt.wantQK) {
				t.Errorf("QKSteps mismatch (-want +got):\n-%v\n+%v", tt.wantQK, got.QKSteps)
			}
			if !reflect.DeepEqual(got.ConvSteps, tt.wantConv) {
				t.Errorf("ConvSteps mismatch (-want +got):\n-%v\n+%v", tt.wantConv, got.ConvSteps)
			}
		})
	}
}

func TestNewScheduleCopies(t *testing.T) {
	ts := leading(10)
	s := NewSchedule(ts, 0.5, 0.8)
	ts[0] = 7
	if s.QKSteps[0] != 901 || s.ConvSteps[0] != 901 {
		t.Errorf("schedule follows the caller's slice: QKSteps[0] = %d, ConvSteps[0] = %d, want 901", s.QKSteps[0], s.ConvSteps[0])
	}
}

func TestNewScheduleClamps(t *testing.T) {
	ts := leading(10)
	for _, tt := range []struct {
		attnT, convT  float64
		wantQK, wantC int
	}{
		{-0.1, 2, 0, 10},
		{math.NaN(), math.Inf(1), 0, 10},
	} {
		s := NewSchedule(ts, tt.attnT, tt.convT)
		if len(s.QKSteps) != tt.wantQK || len(s.ConvSteps) != tt.wantC {
			t.Errorf("NewSchedule(_, %v, %v) keeps %d and %d steps, want %d and %d", tt.attnT, tt.convT, len(s.QKSteps), len(s.ConvSteps), tt.wantQK, tt.wantC)
		}
	}
}

func TestScheduleSwitches(t *testing.T) {
	s := NewSchedule(leading(10), 0.5, 0.8)
	tests := []struct {
		t              int
		wantQK, wantCv bool
	}{
		{t: 901, wantQK: true, wantCv: true},
		{t: 501, wantQK: true, wantCv: true},
		{t: 401, wantQK: false, wantCv: true},
		{t: 201, wantQK: false, wantCv: true},
		{t: 101, wantQK: false, wantCv: false},
		{t: 1, wantQK: false, wantCv: false},
		{t: 500, wantQK: false, wantCv: false}, // not a timestep of the schedule
		{t: 1000, wantQK: true, wantCv: true},  // official: always on at 1000
		{t: 0, wantQK: false, wantCv: false},
	}
	for _, tt := range tests {
		if got := s.At(tt.t).QK; got != tt.wantQK {
			t.Errorf("QK(%d) mismatch (-want +got):\n-%v\n+%v", tt.t, tt.wantQK, got)
		}
		if got := s.At(tt.t).Conv; got != tt.wantCv {
			t.Errorf("Conv(%d) mismatch (-want +got):\n-%v\n+%v", tt.t, tt.wantCv, got)
		}
	}
	var off Schedule
	if off.At(901).QK || off.At(901).Conv {
		t.Errorf("zero Schedule injects at 901")
	}
	if !off.At(1000).QK || !off.At(1000).Conv {
		t.Errorf("zero Schedule does not inject at 1000")
	}
}

// TestQKLayersFromResDict expands the official res_dict
// {1: [1, 2], 2: [0, 1, 2], 3: [0, 1, 2]} of register_extended_attention_pnp.
func TestQKLayersFromResDict(t *testing.T) {
	resDict := []struct {
		res    int
		blocks []int
	}{{1, []int{1, 2}}, {2, []int{0, 1, 2}}, {3, []int{0, 1, 2}}}
	var want []string
	for _, r := range resDict {
		for _, b := range r.blocks {
			want = append(want, fmt.Sprintf("up_blocks.%d.attentions.%d.transformer_blocks.0.attn1", r.res, b))
		}
	}
	if !reflect.DeepEqual(QKLayers, want) {
		t.Errorf("QKLayers mismatch (-want +got):\n-%v\n+%v", want, QKLayers)
	}
	if want := []string{"up_blocks.1.resnets.1"}; !reflect.DeepEqual(ConvLayers, want) {
		t.Errorf("ConvLayers mismatch (-want +got):\n-%v\n+%v", want, ConvLayers)
	}
}

func TestAt(t *testing.T) {
	s := NewSchedule(leading(10), 0.5, 0.8)
	for _, tt := range []struct {
		t    int
		want Injection
	}{
		{901, Injection{QK: true, Conv: true}},
		{401, Injection{Conv: true}},
		{101, Injection{}},
		{1000, Injection{QK: true, Conv: true}},
	} {
		if got := s.At(tt.t); got != tt.want {
			t.Errorf("At(%d) = %+v, want %+v", tt.t, got, tt.want)
		}
	}
}
