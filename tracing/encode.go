package tracing

import (
	"strconv"
	"unicode/utf8"

	"go.opentelemetry.io/otel/codes"
)

// appendOTel appends FromOTel(s) as JSON without building a Span or using
// reflection: the exporter encodes every sampled span, on a machine whose
// cores the calls need too.
func appendOTel(b []byte, s finished) []byte {
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	b = append(b, `{"trace_id":"`...)
	b = appendHex(b, tid[:])
	b = append(b, `","span_id":"`...)
	b = appendHex(b, sid[:])
	b = append(b, '"')
	if p := s.Parent(); p.IsValid() {
		pid := p.SpanID()
		b = append(b, `,"parent_id":"`...)
		b = appendHex(b, pid[:])
		b = append(b, '"')
	}
	b = append(b, `,"name":`...)
	b = appendJSONString(b, clip(s.Name(), MaxNameLen))
	b = append(b, `,"kind":"`...)
	b = append(b, kindName(s.SpanKind())...)
	b = append(b, `","service":`...)
	var service, instance string
	if r := s.Resource(); r != nil {
		if v, ok := r.Set().Value(keyServiceName); ok {
			service = clip(v.Emit(), MaxNameLen)
		}
		if v, ok := r.Set().Value(keyServiceInstance); ok {
			instance = clip(v.Emit(), MaxNameLen)
		}
	}
	b = appendJSONString(b, service)
	if instance != "" {
		b = append(b, `,"instance":`...)
		b = appendJSONString(b, instance)
	}
	b = append(b, `,"start_ns":`...)
	b = strconv.AppendInt(b, s.StartTime().UnixNano(), 10)
	b = append(b, `,"duration_ns":`...)
	b = strconv.AppendInt(b, s.EndTime().Sub(s.StartTime()).Nanoseconds(), 10)
	if st := s.Status(); st.Code == codes.Error {
		msg := clip(st.Description, MaxErrorLen)
		if msg == "" {
			msg = "error"
		}
		b = append(b, `,"error":`...)
		b = appendJSONString(b, msg)
	}
	attrs := s.Attributes()
	if len(attrs) > 0 {
		var code, errType string
		b = append(b, `,"attrs":{`...)
		for i, kv := range attrs {
			if i == MaxAttrs {
				break
			}
			if i > 0 {
				b = append(b, ',')
			}
			v := clip(kv.Value.Emit(), MaxAttrValLen)
			b = appendJSONString(b, clip(string(kv.Key), MaxAttrKeyLen))
			b = append(b, ':')
			b = appendJSONString(b, v)
			switch kv.Key {
			case keyRPCStatus:
				code = v
			case keyErrorType:
				errType = v
			}
		}
		b = append(b, '}')
		if code == "" {
			code = errType
		}
		if code != "" {
			b = append(b, `,"code":`...)
			b = appendJSONString(b, clip(code, 64))
		}
	}
	if links := s.Links(); len(links) > 0 {
		b = append(b, `,"links":[`...)
		for i, l := range links {
			if i == MaxLinks {
				break
			}
			if i > 0 {
				b = append(b, ',')
			}
			ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
			b = append(b, `{"trace_id":"`...)
			b = appendHex(b, ltid[:])
			b = append(b, `","span_id":"`...)
			b = appendHex(b, lsid[:])
			b = append(b, `"}`...)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendHex appends raw in lowercase hex.
func appendHex(b, raw []byte) []byte {
	const digits = "0123456789abcdef"
	for _, c := range raw {
		b = append(b, digits[c>>4], digits[c&0xf])
	}
	return b
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, as
// encoding/json does (without its HTML escaping, which no reader needs).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break some JavaScript.
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// encodeOTelBatches encodes spans as Batch bodies of at most maxLen bytes
// each, as EncodeBatches does for FromOTel of each span.
func encodeOTelBatches(spans []finished, maxLen int) [][]byte {
	var (
		out [][]byte
		cur []byte
		one []byte
		n   int
	)
	flush := func() {
		if n > 0 {
			out = append(out, append(cur, "]}"...))
		}
		cur, n = nil, 0
	}
	for _, s := range spans {
		one = appendOTel(one[:0], s)
		if n > 0 && (len(cur)+len(one)+3 > maxLen || n == MaxBatchSpans) {
			flush()
		}
		if n == 0 {
			cur = append(make([]byte, 0, min(maxLen, 512*(len(spans)+1))), `{"spans":[`...)
		} else {
			cur = append(cur, ',')
		}
		cur = append(cur, one...)
		n++
	}
	flush()
	return out
}
