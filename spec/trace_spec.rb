# frozen_string_literal: true

require 'polyphony/core/debug'

# Scheduler tracing (Backend#trace_proc=, Backend#trace, Polyphony::Trace).
RSpec.describe 'Tracing' do
  after { backend.trace_proc = nil }

  it 'reports the scheduler events with their arguments' do
    events = []
    backend.trace_proc = proc { |name, *args| events << [name, *args] }
    f = spin { sleep 0.01; :done }
    f.await
    backend.trace(:custom, 1, 2)
    backend.trace_proc = nil
    names = events.map(&:first)
    expect(names).to include(:spin, :schedule, :block, :unblock, :enter_poll, :leave_poll, :terminate)
    spin_event = events.find { |e| e.first == :spin }
    expect(spin_event[1]).to equal(f)
    expect(spin_event[2]).to be_an(Array)
    expect(spin_event[2].first).to match(/trace_spec\.rb/)
    expect(events).to include([:terminate, f, :done])
    expect(events.last).to eq([:custom, 1, 2])
    schedule = events.find { |e| e.first == :schedule && e[1].equal?(f) }
    expect(schedule[2..3]).to eq([nil, false])
  end

  it 'costs nothing and reports nothing when off, and does not re-enter' do
    count = 0
    backend.trace_proc = proc { count += 1; snooze }
    spin { :x }.await
    backend.trace_proc = nil
    seen = count
    spin { :y }.await
    expect(count).to eq(seen)
    expect(backend.trace(:ignored)).to be_nil
  end

  it 'switches off with a warning when the trace proc raises, and refuses non-callables' do
    backend.trace_proc = proc { raise 'in trace' }
    expect { expect(spin { :ok }.await).to eq(:ok) }
      .to output(/the trace proc raised #<RuntimeError: in trace>; tracing is off/).to_stderr
    calls = 0
    backend.trace_proc = proc { calls += 1 }
    spin { }.await
    expect(calls).to be > 0
    expect { backend.trace_proc = 42 }.to raise_error(TypeError)
    expect { backend.trace }.to raise_error(ArgumentError)
  end

  it 'sends events as hashes with Polyphony::Trace' do
    events = []
    Polyphony::Trace.start_event_firehose { |e| events << e }
    spin { :fire }.await
    Polyphony::Trace.stop_event_firehose
    term = events.find { |e| e[:event] == :terminate }
    expect(term[:value]).to eq(:fire)
    expect(term[:stamp]).to be_a(Float)
    r, w = IO.pipe
    Polyphony::Trace.start_event_firehose(w)
    spin { }.await
    Polyphony::Trace.stop_event_firehose
    w.close
    expect(r.read).to include(':event=>:spin')
    r.close
  end

  it 'formats trace output' do
    expect(format_trace(['msg'])).to eq("msg\n")
    expect(format_trace(['msg', 1, :a])).to eq("msg: [1, :a]\n")
    expect(format_trace([{ a: 1 }])).to eq("{:a=>1}\n")
    out, = run_ruby("require 'polyphony/core/debug'; trace 'hello', 42")
    expect(out).to eq("hello: [42]\n")
  end
end
