// Package onnx writes ONNX models (ModelProto protobuf bytes) from Go, and
// offers a small builder for the operators Stable Diffusion's graphs need.
// It has no dependency on ONNX Runtime or protobuf libraries: the wire
// format is written directly (see onnx/onnx.proto for the field numbers).
package onnx

import (
	"cmp"
	"encoding/binary"
	"math"
)

// DataType is TensorProto.DataType.
type DataType int32

const (
	Float    DataType = 1
	Uint8    DataType = 2
	Int8     DataType = 3
	Int32    DataType = 6
	Int64    DataType = 7
	Bool     DataType = 9
	Float16  DataType = 10
	Double   DataType = 11
	BFloat16 DataType = 16
)

// dataTypes names each DataType and gives its element size in bytes.
var dataTypes = map[DataType]struct {
	name string
	size int
}{
	Float:    {"float32", 4},
	Uint8:    {"uint8", 1},
	Int8:     {"int8", 1},
	Int32:    {"int32", 4},
	Int64:    {"int64", 8},
	Bool:     {"bool", 1},
	Float16:  {"float16", 2},
	Double:   {"float64", 8},
	BFloat16: {"bfloat16", 2},
}

// Size is the element size in bytes (0 for an unknown type).
func (d DataType) Size() int { return dataTypes[d].size }

func (d DataType) String() string { return cmp.Or(dataTypes[d].name, "unknown") }

// enc appends protobuf wire-format fields; err is the first error of the
// writers that filled it or its nested messages.
type enc struct {
	b   []byte
	err error
}

const (
	wireVarint = 0
	wireI64    = 1
	wireBytes  = 2
	wireI32    = 5
)

func (e *enc) tag(field, wire int) { e.varint(uint64(field)<<3 | uint64(wire)) }

func (e *enc) varint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }

func (e *enc) int(field int, v int64) {
	if v == 0 {
		return
	}
	e.tag(field, wireVarint)
	e.varint(uint64(v))
}

func (e *enc) float(field int, v float32) {
	e.tag(field, wireI32)
	e.b = binary.LittleEndian.AppendUint32(e.b, math.Float32bits(v))
}

func (e *enc) bytes(field int, v []byte) {
	e.tag(field, wireBytes)
	e.varint(uint64(len(v)))
	e.b = append(e.b, v...)
}

// str omits empty strings, proto3's default.
func (e *enc) str(field int, v string) {
	if v != "" {
		e.bytes(field, []byte(v))
	}
}

// msg writes a nested message produced by f, keeping f's error.
func (e *enc) msg(field int, f func(*enc)) {
	var sub enc
	f(&sub)
	e.bytes(field, sub.b)
	e.err = cmp.Or(e.err, sub.err)
}

func (e *enc) packedInts(field int, vs []int64) {
	if len(vs) == 0 {
		return
	}
	var sub enc
	for _, v := range vs {
		sub.varint(uint64(v))
	}
	e.bytes(field, sub.b)
}

// Field numbers from onnx.proto.
const (
	modelIRVersion    = 1
	modelProducerName = 2
	modelProducerVer  = 3
	modelGraph        = 7
	modelOpsetImport  = 8

	opsetDomain  = 1
	opsetVersion = 2

	graphNode        = 1
	graphName        = 2
	graphInitializer = 5
	graphInput       = 11
	graphOutput      = 12

	nodeInput     = 1
	nodeOutput    = 2
	nodeName      = 3
	nodeOpType    = 4
	nodeAttribute = 5
	nodeDomain    = 7

	attrName = 1
	attrF    = 2
	attrI    = 3
	attrS    = 4
	attrG    = 6
	attrInts = 8
	attrType = 20

	tensorDims         = 1
	tensorDataType     = 2
	tensorName         = 8
	tensorRawData      = 9
	tensorExternalData = 13
	tensorDataLocation = 14

	entryKey   = 1
	entryValue = 2

	valueInfoName = 1
	valueInfoType = 2

	typeTensor      = 1
	typeTensorElem  = 1
	typeTensorShape = 2
	shapeDim        = 1
	dimValue        = 1
	dimParam        = 2
	dataLocExternal = 1
	irVersion       = 8
)
