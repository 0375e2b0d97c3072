# frozen_string_literal: true

# rubocop:disable Lint/IncompatibleIoSelectWithFiberScheduler (IO.select is what is tested)

# IO.select parks only the calling fiber, on every Ruby and in every fiber
# (the main one included), with stdlib's sets, results and errors.
RSpec.describe 'IO.select' do
  def monotonic
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  it 'waits for readability while other fibers run, in the main fiber too' do
    r, w = IO.pipe
    ticks = 0
    ticker = spin { loop { ticks += 1; sleep 0.01 } }
    spin { sleep 0.1; w << 'x' }
    t0 = monotonic
    expect(IO.select([r], nil, nil, 2)).to eq([[r], [], []])
    expect(monotonic - t0).to be_between(0.05, 1.5)
    expect(ticks).to be >= 3
    ticker.stop
  end

  it 'runs many selects at once: N waits take about the time of one' do
    pipes = Array.new(10) { IO.pipe }
    t0 = monotonic
    selectors = pipes.map { |r, _| spin { IO.select([r], nil, nil, 2)&.first } }
    spin { sleep 0.1; pipes.each { |_, w| w << '!' } }
    results = Fiber.await(*selectors)
    expect(results).to eq(pipes.map { |r, _| [r] })
    expect(monotonic - t0).to be < 1.0
  end

  it 'reports several IOs, write sets, buffered readers and timeouts as stdlib' do
    a, b = IO.pipe
    c, d = IO.pipe
    spin { sleep 0.05; d << 'z' }
    expect(IO.select([a, c], nil, nil, 2)).to eq([[c], [], []])
    expect(IO.select([a], [b], nil, 0)).to eq([[], [b], []])
    expect(IO.select([a], nil, nil, 0)).to be_nil
    t0 = monotonic
    expect(IO.select([a], nil, nil, 0.05)).to be_nil
    expect(monotonic - t0).to be >= 0.04
    b << "line\nrest"
    a.gets
    expect(IO.select([a], nil, nil, 0)).to eq([[a], [], []]) # "rest" is in the read buffer
    t0 = monotonic
    expect(IO.select([], nil, nil, 0.05)).to be_nil
    expect(monotonic - t0).to be >= 0.04
  end

  it 'raises as stdlib for bad arguments and closed IOs' do
    r, = IO.pipe
    expect { IO.select([r], nil, nil, -1) }.to raise_error(ArgumentError)
    expect { IO.select([r], nil, nil, 'soon') }.to raise_error(TypeError)
    expect { IO.select([42], nil, nil, 0) }.to raise_error(TypeError)
    expect { IO.select(:nope, nil, nil, 0) }.to raise_error(TypeError)
    closed = IO.pipe.first.tap(&:close)
    expect { IO.select([closed], nil, nil, 0) }.to raise_error(IOError)
  end

  it 'is cancelled by a stop, leaving no waiter behind' do
    r, = IO.pipe
    c, = IO.pipe
    f = spin { IO.select([r, c], nil, nil, 5) }
    sleep 0.02
    f.stop
    f.await
    expect(Fiber.current.children).to be_empty
    expect(backend.pending_count).to eq(0)
  end
end
# rubocop:enable Lint/IncompatibleIoSelectWithFiberScheduler
