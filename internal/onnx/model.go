package onnx

import (
	"fmt"
	"maps"
	"slices"
)

// Model is a ModelProto.
type Model struct {
	Opsets          map[string]int64 // domain ("" is ai.onnx) -> version
	ProducerName    string
	ProducerVersion string
	Graph           *GraphProto
}

// GraphProto is the serializable graph: nodes in topological order.
type GraphProto struct {
	Name         string
	Nodes        []*Node
	Initializers []*Tensor
	Inputs       []ValueInfo
	Outputs      []ValueInfo
}

// Node is a NodeProto.
type Node struct {
	Name    string
	OpType  string
	Domain  string
	Inputs  []string // "" marks an omitted optional input
	Outputs []string
	Attrs   []Attr
}

// Attr is an AttributeProto; exactly one of the value fields is used, as
// Kind says.
type Attr struct {
	Name string
	Kind AttrKind
	F    float32
	I    int64
	S    string
	G    *GraphProto
	Ints []int64
}

// AttrKind is AttributeProto.AttributeType (its values are onnx.proto's).
type AttrKind int

const (
	AttrFloat  AttrKind = 1
	AttrInt    AttrKind = 2
	AttrString AttrKind = 3
	AttrGraph  AttrKind = 5
	AttrInts   AttrKind = 7
)

// AFloat, AInt, ... build attributes.
func AFloat(name string, v float32) Attr     { return Attr{Name: name, Kind: AttrFloat, F: v} }
func AInt(name string, v int64) Attr         { return Attr{Name: name, Kind: AttrInt, I: v} }
func AString(name, v string) Attr            { return Attr{Name: name, Kind: AttrString, S: v} }
func AInts(name string, v ...int64) Attr     { return Attr{Name: name, Kind: AttrInts, Ints: v} }
func AGraph(name string, g *GraphProto) Attr { return Attr{Name: name, Kind: AttrGraph, G: g} }

// Dim is one dimension of a ValueInfo shape: a fixed size, or a symbolic
// name (Param) when Value < 0.
type Dim struct {
	Value int64
	Param string
}

// D is a fixed dimension; P a symbolic one.
func D(v int64) Dim     { return Dim{Value: v} }
func P(name string) Dim { return Dim{Value: -1, Param: name} }

// ValueInfo is a ValueInfoProto for a tensor. A nil Dims means unknown rank.
type ValueInfo struct {
	Name string
	Type DataType
	Dims []Dim
}

// Tensor is a TensorProto: inline raw bytes, or external data in a file
// (offset and length in bytes), as ONNX's external data convention says.
type Tensor struct {
	Name     string
	Type     DataType
	Dims     []int64
	Raw      []byte
	External *External
}

// External locates a tensor's bytes in a file. Location is written as is
// (relative to the model file's folder); File is where the bytes are on this
// machine, used by Save to place the file next to the model.
type External struct {
	Location string
	File     string
	Offset   int64
	Length   int64
}

// NumElements is the product of the dims.
func (t *Tensor) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// Marshal serializes the model.
func (m *Model) Marshal() ([]byte, error) {
	if m.Graph == nil {
		return nil, fmt.Errorf("onnx: model has no graph")
	}
	var e enc
	e.int(modelIRVersion, irVersion)
	e.str(modelProducerName, m.ProducerName)
	e.str(modelProducerVer, m.ProducerVersion)
	e.msg(modelGraph, func(s *enc) { writeGraph(s, m.Graph) })
	if e.err != nil {
		return nil, e.err
	}
	for _, d := range slices.Sorted(maps.Keys(m.Opsets)) {
		e.msg(modelOpsetImport, func(s *enc) {
			s.str(opsetDomain, d)
			s.int(opsetVersion, m.Opsets[d])
		})
	}
	return e.b, nil
}

func writeGraph(e *enc, g *GraphProto) {
	for _, n := range g.Nodes {
		e.msg(graphNode, func(s *enc) { writeNode(s, n) })
	}
	e.str(graphName, g.Name)
	for _, t := range g.Initializers {
		e.msg(graphInitializer, func(s *enc) { writeTensor(s, t) })
	}
	for _, v := range g.Inputs {
		e.msg(graphInput, func(s *enc) { writeValueInfo(s, v) })
	}
	for _, v := range g.Outputs {
		e.msg(graphOutput, func(s *enc) { writeValueInfo(s, v) })
	}
}

// writeNode keeps an attribute's error, naming the node, in e.err.
func writeNode(e *enc, n *Node) {
	for _, in := range n.Inputs {
		e.bytes(nodeInput, []byte(in)) // "" too: it marks an omitted input
	}
	for _, out := range n.Outputs {
		e.bytes(nodeOutput, []byte(out))
	}
	e.str(nodeName, n.Name)
	e.str(nodeOpType, n.OpType)
	for _, a := range n.Attrs {
		e.msg(nodeAttribute, func(s *enc) { writeAttr(s, a) })
	}
	e.str(nodeDomain, n.Domain)
	if e.err != nil {
		e.err = fmt.Errorf("node %s (%s): %w", n.Name, n.OpType, e.err)
	}
}

// writeAttr keeps an unknown kind as e.err.
func writeAttr(e *enc, a Attr) {
	e.str(attrName, a.Name)
	switch a.Kind {
	case AttrFloat:
		e.float(attrF, a.F)
	case AttrInt:
		e.tag(attrI, wireVarint)
		e.varint(uint64(a.I))
	case AttrString:
		e.bytes(attrS, []byte(a.S))
	case AttrGraph:
		e.msg(attrG, func(s *enc) { writeGraph(s, a.G) })
	case AttrInts:
		e.packedInts(attrInts, a.Ints)
	default:
		e.err = fmt.Errorf("attribute %s: unknown kind %d", a.Name, a.Kind)
		return
	}
	e.int(attrType, int64(a.Kind))
}

func writeTensor(e *enc, t *Tensor) {
	e.packedInts(tensorDims, t.Dims)
	e.int(tensorDataType, int64(t.Type))
	e.str(tensorName, t.Name)
	if t.External != nil {
		x := t.External
		entry := func(k, v string) {
			e.msg(tensorExternalData, func(s *enc) {
				s.str(entryKey, k)
				s.str(entryValue, v)
			})
		}
		entry("location", x.Location)
		entry("offset", fmt.Sprint(x.Offset))
		entry("length", fmt.Sprint(x.Length))
		e.int(tensorDataLocation, dataLocExternal)
		return
	}
	e.bytes(tensorRawData, t.Raw)
}

func writeValueInfo(e *enc, v ValueInfo) {
	e.str(valueInfoName, v.Name)
	e.msg(valueInfoType, func(s *enc) {
		s.msg(typeTensor, func(tt *enc) {
			tt.int(typeTensorElem, int64(v.Type))
			if v.Dims == nil {
				return
			}
			tt.msg(typeTensorShape, func(sh *enc) {
				for _, d := range v.Dims {
					sh.msg(shapeDim, func(dd *enc) {
						if d.Value >= 0 && d.Param == "" {
							dd.tag(dimValue, wireVarint)
							dd.varint(uint64(d.Value))
						} else {
							dd.str(dimParam, d.Param)
						}
					})
				}
			})
		})
	})
}
