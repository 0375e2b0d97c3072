# frozen_string_literal: true

RSpec.describe 'supervise' do
  def supervisor(**opts, &)
    spin do
      workers = 2.times.map { |i| spin(:"w#{i}") { Fiber.current.receive } }
      Fiber.current.parent << workers
      supervise(**opts, &)
    end
  end

  it 'calls the block for every supervised fiber that finishes, and never returns' do
    seen = []
    sup = supervisor { |f, r| seen << [f.tag, r] }
    a, b = Fiber.current.receive
    a << :x
    b << :y
    sleep 0.01
    expect(seen).to eq([%i[w0 x], %i[w1 y]])
    expect(sup.state).to eq(:waiting)
    sup.stop
    expect(sup.await).to be_nil
  end

  it 'swallows errors of supervised fibers instead of raising them' do
    seen = []
    sup = supervisor { |f, r| seen << [f.tag, r.class] }
    a, = Fiber.current.receive
    a << nil
    a.raise(IOError)
    sleep 0.01
    expect(seen).to eq([[:w0, IOError]])
    expect(sup.dead?).to be(false)
    sup.terminate
    sup.await
  end

  it 'calls on_done for every fiber and on_error for failed ones' do
    done = []
    errors = []
    sup = supervisor(on_done: ->(f, _r) { done << f.tag }, on_error: ->(f, r) { errors << [f.tag, r.message] })
    a, b = Fiber.current.receive
    a << :ok
    b.raise(RuntimeError, 'bad')
    sleep 0.01
    expect(done).to eq(%i[w0 w1])
    expect(errors).to eq([[:w1, 'bad']])
    sup.stop
  end

  it 'restarts fibers with restart: :always and :on_error' do
    count = 0
    sup = spin do
      spin(:worker) { count += 1; sleep 0.01; count < 3 ? :again : sleep }
      supervise(restart: :always)
    end
    sleep 0.1
    expect(count).to eq(3)
    expect(sup.children.map(&:tag)).to eq([:worker])
    sup.stop
    sup.await

    runs = []
    sup = spin do
      spin(:w) { runs << :run; raise 'x' if runs.size < 3; :fine }
      spin(:ok) { :done }
      supervise(restart: :on_error)
    end
    sleep 0.05
    expect(runs.size).to eq(3)
    expect(sup.children).to eq([])
    sup.stop
  end

  it 'monitors fibers spun while supervising, and re-parents given fibers' do
    orphan = spin { sleep 0.02; :orphan }
    seen = []
    sup = spin do
      spin { sleep 0.01; spin { :late } }
      supervise(orphan) { |_f, r| seen << r }
    end
    sleep 0.05
    expect(orphan.parent).to eq(sup)
    expect(seen).to include(:orphan)
    sup.stop
  end

  it 'rejects unknown options' do
    expect { supervise(restart: :sometimes) }.to raise_error(ArgumentError)
    expect { supervise(bogus: 1) }.to raise_error(ArgumentError)
  end

  it 'wakes what waits on a fiber in the order it started waiting: a supervisor before a later await' do
    order = []
    f = spin { sleep 0.02; :done }
    sup = spin { supervise(f) { |_fiber, result| order << [:supervisor, result] } }
    snooze
    awaiter = spin { order << [:awaiter, f.await] }
    snooze
    awaiter.await
    snooze
    expect(order).to eq([%i[supervisor done], %i[awaiter done]])

    # And the other way round: an await that started first is woken first.
    order.clear
    g = spin { sleep 0.02; :again }
    first = spin { order << [:awaiter, g.await] }
    snooze
    watcher = spin { g.__add_monitor__(Fiber.current); order << [:monitor, Fiber.current.monitor_mailbox.shift.last] }
    first.await
    watcher.await
    expect(order).to eq([%i[awaiter again], %i[monitor again]])
  ensure
    sup&.stop
  end
end
