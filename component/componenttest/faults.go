package componenttest

import (
	"context"
	"time"

	"github.com/cblink/cblink/internal/xstream"
)

// runFaults runs the faults of a phase and reports whether the
// connection must end.
func (c *Conn) runFaults(p Phase, n int64, dec *xstream.Decoder) bool {
	for _, f := range c.faults {
		if f.Phase != p || (p == PhaseStanzas && int64(f.After) != n) {
			continue
		}
		c.s.logf("componenttest: conn %d: fault %v at %v", c.idx, f.Action, p)
		switch f.Action {
		case ActionSend:
			if c.ioUp {
				_ = c.writeBytes(context.Background(), f.Bytes)
			} else {
				_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
				_, _ = c.nc.Write(f.Bytes)
			}
		case ActionClose:
			c.setCondition("fault-close")
			if c.ioUp {
				ctx, cancel := context.WithTimeout(context.Background(), c.s.opts.WriteTimeout)
				_ = c.w.Close(ctx, nil)
				cancel()
			}
			c.Close()
			return true
		case ActionReset:
			c.setCondition("fault-reset")
			if c.ioUp {
				c.flush()
			}
			c.Reset()
			return true
		case ActionStall, ActionBlackhole:
			if c.ioUp {
				c.flush()
			}
			if f.Action == ActionBlackhole || f.Duration <= 0 {
				c.setCondition("fault-blackhole")
				c.Blackhole()
				<-c.closing
				return true
			}
			c.Stall(f.Duration)
			if c.gate() != nil {
				return true
			}
		case ActionStreamError:
			c.fail(f.Err, dec)
			return true
		}
	}
	return false
}
