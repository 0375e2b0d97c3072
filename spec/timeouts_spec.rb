# frozen_string_literal: true

RSpec.describe 'Timeouts and the global API' do
  describe 'move_on_after' do
    it 'returns the block value, or with_value when the block overruns' do
      expect(move_on_after(1) { :done }).to eq(:done)
      t = monotonic
      expect(move_on_after(0.02, with_value: :late) { sleep 1 }).to eq(:late)
      expect(monotonic - t).to be < 0.5
      expect(move_on_after(0.02) { sleep 1 }).to be_nil
    end

    it 'fires at the first switchpoint for zero and negative intervals' do
      expect(move_on_after(0, with_value: :z) { snooze; :ran }).to eq(:z)
      expect(move_on_after(-1, with_value: :n) { sleep 0.01; :ran }).to eq(:n)
      expect(move_on_after(0, with_value: :z) { :no_switchpoint }).to eq(:no_switchpoint)
    end

    it 'resolves nested scopes to their own level' do
      r = move_on_after(0.2, with_value: :outer) do
        move_on_after(0.01, with_value: :inner) { sleep 1 }
      end
      expect(r).to eq(:inner)
      r = move_on_after(0.02, with_value: :outer) do
        move_on_after(1, with_value: :inner) { sleep 1 }
        :not_reached
      end
      expect(r).to eq(:outer)
    end

    it 'interrupts a fiber blocked in I/O' do
      r, w = IO.pipe
      expect(move_on_after(0.02, with_value: :t) { backend.read(r, +'', 10, false, 0) }).to eq(:t)
      w << 'x'
      expect(backend.read(r, +'', 10, false, 0)).to eq('x')
    ensure
      r&.close
      w&.close
    end

    it 'gives a block with an argument a canceller that can be reset' do
      t0 = monotonic
      r = move_on_after(0.05, with_value: :moved) do |canceller|
        expect(canceller).to be_a(Fiber)
        3.times do
          sleep 0.03
          canceller.reset
        end
        sleep 1
      end
      expect(r).to eq(:moved)
      expect(monotonic - t0).to be >= 0.12
      expect(Fiber.current.children).to eq([])
    end

    it 'does not swallow a MoveOn that is not its own' do
      f = spin do
        move_on_after(1) { |_c| sleep 1 }
        :not_reached
      end
      snooze
      f.stop(:stopped)
      expect(f.await).to eq(:stopped)
    end

    it 'raises NoMethodError without a block and TypeError for a bad interval' do
      expect { move_on_after(1) }.to raise_error(NoMethodError)
      expect { move_on_after('x') { sleep 0.01 } }.to raise_error(TypeError)
    end
  end

  describe 'cancel_after' do
    it 'raises Polyphony::Cancel by default' do
      expect { cancel_after(0.01) { sleep 1 } }.to raise_error(Polyphony::Cancel)
      expect(cancel_after(1) { :ok }).to eq(:ok)
    end

    it 'accepts a class, a [class, message] pair, a message or an instance (differences.md: cancel_after instance)' do
      expect { cancel_after(0.01, with_exception: ArgumentError) { sleep 1 } }.to raise_error(ArgumentError)
      expect { cancel_after(0.01, with_exception: [IOError, 'slow']) { sleep 1 } }.to raise_error(IOError, 'slow')
      expect { cancel_after(0.01, with_exception: 'boo') { sleep 1 } }.to raise_error(RuntimeError, 'boo')
      e = KeyError.new('mine')
      expect { cancel_after(0.01, with_exception: e) { sleep 1 } }.to(raise_error { |x| expect(x).to equal(e) })
    end

    it 'raises from the resettable form with raising_fiber set to the canceller' do
      canceller = nil
      expect do
        cancel_after(0.02, with_exception: [IOError, 'x']) do |c|
          canceller = c
          sleep 1
        end
      end.to raise_error(IOError) { |e| expect(e.raising_fiber).to eq(canceller) }
    end

    it 'leaves no stale exception behind when the block ends as the timer fires' do
      10.times { cancel_after(0.001) { :quick } }
      sleep 0.01
      expect(sleep(0.001)).to be_nil
    end
  end

  describe 'after, every, throttled_loop, spin_scope' do
    it 'runs a block after an interval in a new fiber' do
      f = after(0.01) { :later }
      expect(f).to be_a(Fiber)
      expect(f.await).to eq(:later)
      g = after(1) { :never }
      g.stop
      expect(g.await).to be_nil
    end

    it 'runs every on a drift-free grid, skipping missed ticks' do
      times = []
      t0 = monotonic
      move_on_after(0.52) do
        every(0.05) do
          times << (monotonic - t0)
          sleep 0.07 if times.size == 3
        end
      end
      expect(times.size).to be_between(7, 10)
      expect(times.last % 0.05).to be < 0.02
    end

    it 'shows no cumulative drift: a slow block does not push later ticks of every back' do
      # Each tick works 20 ms of a 50 ms period. A timer rearmed after the
      # block would start every tick 20 ms further from the grid (its
      # lateness cycling through the whole period, median about 25 ms); on
      # the grid each tick is late only by the scheduling delay. Margins
      # hold on a loaded machine: the work stays under the period even at
      # half a core.
      lateness = []
      t0 = monotonic
      move_on_after(1.02) do
        every(0.05) do
          lateness << ((monotonic - t0) % 0.05)
          start = monotonic
          nil while monotonic - start < 0.02
        end
      end
      expect(lateness.size).to be >= 10
      expect(lateness.sort[lateness.size / 2]).to be < 0.012
    end

    it 'throttles with a rate, interval or count, and ends on break' do
      n = 0
      t0 = monotonic
      throttled_loop(100, count: 5) { n += 1 }
      expect(n).to eq(5)
      expect(monotonic - t0).to be_between(0.035, 0.2)
      expect(throttled_loop(interval: 0.001) { break }).to be_nil
      expect { throttled_loop(rate: 0) { } }.to raise_error(ArgumentError, /Invalid rate/)
      expect { throttled_loop('x') { } }.to raise_error(ArgumentError, /Invalid rate/)
    end

    it 'spin_scope waits for the fibers spun inside and returns the block value' do
      done = []
      r = spin_scope do
        3.times { |i| spin { sleep 0.01 * i; done << i } }
        :scope
      end
      expect(r).to eq(:scope)
      expect(done).to eq([0, 1, 2])
      expect { spin_scope }.to raise_error(RuntimeError)
    end

    it 'spin_scope raises an error of an inner fiber and leaves nothing running' do
      inner = nil
      expect do
        spin_scope do
          inner = spin { sleep 1 }
          spin { raise 'inner' }
          sleep 1
        end
      end.to raise_error(RuntimeError, 'inner')
      expect(inner.dead?).to be(true)
    end
  end

  describe 'Timeout.timeout' do
    it 'interrupts only the calling fiber with Timeout::Error' do
      other = spin { sleep 0.05; :other }
      expect { Timeout.timeout(0.01) { sleep 1 } }.to raise_error(Timeout::Error, 'execution expired')
      expect(other.await).to eq(:other)
    end

    it 'takes a class and message, yields sec (differences.md: Timeout yields sec), and ignores nil or 0' do
      expect { Timeout.timeout(0.01, IOError, 'slow') { sleep 1 } }.to raise_error(IOError, 'slow')
      expect(Timeout.timeout(0.5) { |s| s }).to eq(0.5)
      expect(Timeout.timeout(nil) { |s| [s, :ran] }).to eq([nil, :ran])
      expect(Timeout.timeout(0) { sleep 0.01; :ran }).to eq(:ran)
      expect { Timeout.timeout(-1) { sleep 0.01 } }.to raise_error(Timeout::Error)
    end

    it 'unwinds nested timeouts to their own level' do
      r = Timeout.timeout(1) do
        Timeout.timeout(0.01) { sleep 1 }
      rescue Timeout::Error
        :inner
      end
      expect(r).to eq(:inner)
    end

    it 'works as the included module function' do
      klass = Class.new { include Timeout }
      expect { klass.new.send(:timeout, 0.01) { sleep 1 } }.to raise_error(Timeout::Error)
    end
  end
end
