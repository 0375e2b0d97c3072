# frozen_string_literal: true

# The fiber internals of the API (the P2 entries of Fiber): parking,
# out-of-band fibers, the lifecycle helpers.
RSpec.describe 'Fiber internals' do
  it 'parks a fiber: its wake-ups are held until it is unparked' do
    log = []
    f = spin { loop { log << Fiber.current.receive } }
    snooze
    f << :a
    snooze
    expect(f.__park__).to equal(f)
    expect(f.__parked__?).to be(true)
    f << :b
    f.schedule(:plain)
    3.times { snooze }
    expect(log).to eq([:a])
    expect(f.state).to eq(:waiting)
    expect(f.__unpark__).to equal(f)
    expect(f.__parked__?).to be(false)
    3.times { snooze }
    expect(log).to eq(%i[a b])
    f.stop
    f.await
  end

  it 'keeps the exception a parked fiber got, and unparking twice is harmless' do
    f = spin { suspend }
    snooze
    f.__park__
    f.raise(IOError, 'while parked')
    f.schedule(:plain_after)
    snooze
    expect(f).to be_alive
    f.__unpark__
    f.__unpark__
    expect { f.await }.to raise_error(IOError, 'while parked')
  end

  it 'parks only fibers of the current thread' do
    other = Thread.new { spin { sleep 1 }.tap { snooze } }.value
    expect { other.__park__ }.to raise_error(ThreadError)
    expect { other.__parked__? }.to raise_error(ThreadError)
  end

  it 'runs an out-of-band fiber first, outside the tree, and sends its errors to the main fiber' do
    order = []
    spin { order << :queued_first }
    oob = Fiber.schedule_priority_oob_fiber { order << :oob }
    expect(oob.oob).to be(true)
    expect(oob.parent).to be_nil
    expect(Fiber.current.children).not_to include(oob)
    snooze
    expect(order).to eq(%i[oob queued_first])
    expect { Fiber.schedule_priority_oob_fiber }.to raise_error(ArgumentError)
    Fiber.schedule_priority_oob_fiber { raise 'from oob' }
    expect { sleep 0.05 }.to raise_error(RuntimeError, 'from oob')
    expect(spin { }.oob).to be(false)
  end

  it 'has an auto watcher per fiber, and safe_transfer raises a transferred exception' do
    w = Fiber.current.auto_watcher
    expect(w).to be_a(Polyphony::Event)
    expect(Fiber.current.auto_watcher).to equal(w)
    target = Fiber.new { |v| v }
    expect(target.safe_transfer(:hello)).to eq(:hello)
    raiser = Fiber.new { |_| IOError.new('transferred') }
    expect { raiser.safe_transfer }.to raise_error(IOError, 'transferred')
  end

  it 'finalizes children, informs monitors and restarts itself' do
    parent = spin do
      spin { sleep 1 }
      snooze
      Fiber.current.finalize_children
      Fiber.current.children.size
    end
    expect(parent.await).to eq(0)

    watcher = spin { Fiber.current.monitor_mailbox.shift }
    f = spin { sleep 1 }
    f.__add_monitor__(watcher)
    snooze
    expect(f.inform_monitors(:reported)).to equal(f)
    expect(watcher.await).to eq([f, :reported])
    child = nil
    parent_of_child = spin do
      child = spin { sleep 1 }
      snooze
      child.inform_monitors(IOError.new('reported error'), true)
      sleep 1
    end
    expect { parent_of_child.await }.to raise_error(IOError, 'reported error')
    f.stop

    runs = 0
    r = spin do
      runs += 1
      Fiber.current.restart_self if runs < 3
      runs
    end
    expect(r.await).to eq(3)
  end

  it 'builds a fiber by hand with prepare and run, and finalizes one early' do
    f = Fiber.new { |v| f.run(v) }
    expect(f.prepare(:manual, proc { |v| [:got, v] }, nil, Fiber.current)).to equal(f)
    expect([f.tag, f.parent, f.state]).to eq([:manual, Fiber.current, :runnable])
    expect(Fiber.current.children).to include(f)
    expect(f.location).to match(/fiber_internals_spec\.rb/)
    expect(f.await).to eq([:got, nil])
    expect(Fiber.current.children).not_to include(f)

    g = Fiber.new { |v| g.run(v) }
    g.prepare(:failing, proc { raise IOError, 'from a prepared fiber' }, nil, Fiber.current)
    expect { g.await }.to raise_error(IOError, 'from a prepared fiber')

    watcher = spin { Fiber.current.monitor_mailbox.shift }
    h = spin do
      Fiber.current.__add_monitor__(watcher)
      Fiber.current.finalize(:early)
      sleep 0.01
      :late
    end
    expect(h.await).to eq(:early)
    expect(watcher.await).to eq([h, :early])
  end

  it 'refuses prepare, run and finalize out of turn' do
    started = spin { :done }
    started.await
    expect { started.prepare(:x, proc { }, nil, Fiber.current) }.to raise_error(FiberError)
    expect { Fiber.current.prepare(:x, proc { }, nil, Fiber.current) }.to raise_error(FiberError)
    expect { Fiber.new { }.prepare(:x, :not_a_proc, nil, Fiber.current) }.to raise_error(TypeError)
    expect { Fiber.new { }.prepare(:x, proc { }, nil, :not_a_fiber) }.to raise_error(TypeError)
    expect { spin { }.run(1) }.to raise_error(FiberError)
    expect { Fiber.current.run(1) }.to raise_error(FiberError)
    expect { spin { }.finalize(1) }.to raise_error(FiberError)
    expect { Fiber.current.finalize(1) }.to raise_error(FiberError) # the main fiber
  end
end
