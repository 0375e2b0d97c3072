# frozen_string_literal: true

require 'polyphony/adapters/mysql2'
require 'polyphony/adapters/sequel'

# The mysql2 and sequel adapters, against a real MariaDB server started for
# the run (spec/support/servers.rb), with Debian's ruby-mysql2 and
# ruby-sequel.
RSpec.describe 'Adapters for MariaDB (mysql2, sequel)' do
  let(:config) { TestServers.mariadb }

  def monotonic
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  describe 'polyphony/adapters/mysql2' do
    it 'runs queries of several fibers at once, parking only each fiber' do
      clients = Array.new(4) { Mysql2::Client.new(**config) }
      expect(clients.first.query('SELECT 1 + 1 AS two').to_a).to eq([{ 'two' => 2 }])
      ticks = 0
      ticker = spin { loop { ticks += 1; sleep 0.01 } }
      t0 = monotonic
      results = Fiber.await(*clients.map { |c| spin { c.query('SELECT SLEEP(0.3) AS s').first['s'] } })
      elapsed = monotonic - t0
      ticker.stop
      expect(results).to eq([0, 0, 0, 0])
      expect(elapsed).to be < 1.0 # one after the other would be 1.2 s
      expect(ticks).to be > 5
    ensure
      clients&.each(&:close)
    end

    it 'reports query errors as Mysql2::Error and stays usable' do
      client = Mysql2::Client.new(**config)
      expect { client.query('SELECT * FROM no_such_table') }.to raise_error(Mysql2::Error)
      expect(client.query('SELECT 3 AS x').first['x']).to eq(3)
      expect(client.query('DO 1')).to be_nil
    ensure
      client&.close
    end

    it 'can be stopped in the middle of a query' do
      client = Mysql2::Client.new(**config)
      f = spin { client.query('SELECT SLEEP(5)') }
      sleep 0.1
      t0 = monotonic
      f.stop
      f.await
      expect(monotonic - t0).to be < 1
    ensure
      client&.close
    end
  end

  describe 'polyphony/adapters/sequel' do
    let(:db) do
      Sequel.connect(adapter: 'mysql2', host: config[:host], port: config[:port], user: config[:username],
                     max_connections: 3)
    end
    after { db.disconnect }

    it 'gives each fiber its own connection, up to max_connections' do
      expect(db.pool).to be_a(Polyphony::FiberConnectionPool)
      expect(db.pool.max_size).to eq(3)
      t0 = monotonic
      ids = Fiber.await(Array.new(6) { spin { db.synchronize { |c| c.query('SELECT SLEEP(0.2)'); c.object_id } } })
      elapsed = monotonic - t0
      expect(ids.uniq.size).to eq(3)
      expect(db.pool.size).to eq(3)
      expect(elapsed).to be < 0.8 # serial would be 1.2 s; two rounds of 0.2 s in parallel
      expect(db['SELECT 42 AS answer'].first[:answer]).to eq(42)
    end

    it 'discards a connection whose block was interrupted, and preconnects' do
      db.pool.preconnect
      expect(db.pool.size).to eq(3)
      f = spin { db.synchronize { |c| c.query('SELECT SLEEP(5)') } }
      sleep 0.1
      f.stop
      f.await
      expect(db.pool.size).to eq(2)
      expect(db['SELECT 1 AS one'].first[:one]).to eq(1)
      db.disconnect
      expect(db.pool.size).to eq(0)
    end
  end
end

RSpec.describe 'Adapters for the console, readline, the file system and pg' do
  it 'polyphony/adapters/readline: other fibers run while Readline waits for input' do
    out, err, status = run_ruby(<<~RUBY)
      require 'polyphony/adapters/readline'
      r, w = IO.pipe
      Readline.input = r
      ticks = 0
      spin { loop { ticks += 1; sleep 0.01 } }
      spin { sleep 0.1; w.puts 'typed' }
      p Readline.readline('', false), ticks > 3
    RUBY
    expect(err).to eq('')
    expect(status).to be_success
    # What Readline itself prints for that input without the gem (Ruby 3.3's
    # Readline is Reline, which echoes the line as it renders it).
    plain, = run_ruby(<<~RUBY)
      require 'readline'
      r, w = IO.pipe
      Readline.input = r
      w.puts 'typed'
      p Readline.readline('', false)
    RUBY
    expect(plain).to end_with(%("typed"\n))
    expect(out).to eq("#{plain}true\n")
  end

  it 'polyphony/adapters/irb: loaded with IRB, it gives Kernel#gets back to IRB' do
    out, = run_ruby(<<~RUBY, stdin: "line\n")
      require 'irb'
      require 'polyphony'
      p method(:gets).source_location[0].end_with?('adapters/irb.rb'), gets
    RUBY
    expect(out).to eq(%(true\n"line\\n"\n))
  end

  it 'polyphony/adapters/fs: File.stat and IO.read(path) on the thread pool' do
    require 'polyphony/adapters/fs'
    path = __FILE__
    expect(File.stat(path).size).to eq(File.size(path))
    expect(IO.read(path)).to eq(File.binread(path)) # rubocop:disable Security/IoMethods
    expect(IO.read(path, 10)).to eq(File.binread(path, 10)) # rubocop:disable Security/IoMethods
    expect(Polyphony::ThreadPool.instance_variable_get(:@default_pool)).not_to be_nil
    expect { File.stat('/no/such/file') }.to raise_error(Errno::ENOENT)
  end

  it 'polyphony/adapters/postgres: PG.connect_async and PG.connect_sync' do
    require 'polyphony/adapters/postgres'
    params = TestServers.postgres
    [PG.connect_async(**params), PG.connect_sync(**params)].each do |conn|
      expect(conn.exec('SELECT 7 AS n').first['n']).to eq('7')
      conn.close
    end
  end
end

RSpec.describe 'polyphony/adapters/postgres (pg against PostgreSQL)' do
  before(:all) { require 'polyphony/adapters/postgres' }

  let(:params) { TestServers.postgres }

  def monotonic
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  it 'parks only the calling fiber, the main fiber included' do
    conn = PG.connect(**params)
    ticks = 0
    ticker = spin { loop { ticks += 1; sleep 0.01 } }
    t0 = monotonic
    expect(conn.exec('SELECT pg_sleep(0.3), 1 AS one').first['one']).to eq('1')
    expect(monotonic - t0).to be >= 0.25
    expect(ticks).to be >= 10 # the ticker ran while the main fiber waited
    ticker.stop
    conns = Array.new(5) { PG.connect(**params) }
    t0 = monotonic
    Fiber.await(*conns.map { |c| spin { c.exec('SELECT pg_sleep(0.3)') } })
    expect(monotonic - t0).to be < 1.0 # one after the other would be 1.5 s
  ensure
    conn&.close
    conns&.each(&:close)
  end

  it 'raises query errors, stays usable, yields results and takes parameters' do
    conn = PG.connect(**params)
    expect { conn.exec('SELECT no_such_column') }.to raise_error(PG::UndefinedColumn)
    expect(conn.exec('SELECT 2 AS two') { |r| r.first['two'] }).to eq('2')
    expect(conn.exec_params('SELECT $1::int + 1 AS n', [41]).first['n']).to eq('42')
    conn.prepare('add', 'SELECT $1::int + $2::int AS sum')
    expect(conn.exec_prepared('add', [2, 3]).first['sum']).to eq('5')
    expect(conn.query('SELECT 7 AS q').first['q']).to eq('7')
  ensure
    conn&.close
  end

  it 'waits for notifications without blocking the thread' do
    listener = PG.connect(**params)
    notifier = PG.connect(**params)
    listener.exec('LISTEN polyphony_chan')
    expect(listener.wait_for_notify(0.05)).to be_nil
    sender = spin { sleep 0.05; notifier.exec("NOTIFY polyphony_chan, 'hello'") }
    got = []
    expect(listener.wait_for_notify(2) { |channel, _pid, payload| got << [channel, payload] }).to eq('polyphony_chan')
    expect(got).to eq([%w[polyphony_chan hello]])
    sender.await
  ensure
    [listener, notifier].each { |c| c&.close }
  end

  it 'can stop a fiber in the middle of a query' do
    conn = PG.connect(**params)
    f = spin { conn.exec('SELECT pg_sleep(5)') }
    sleep 0.1
    t0 = monotonic
    f.stop
    f.await
    expect(monotonic - t0).to be < 1
  ensure
    conn&.close
  end

  it 'cancels a query its fiber gave up on: the next query neither waits for it nor gets its error' do
    conn = PG.connect(**params)
    t0 = monotonic
    expect(move_on_after(0.2) { conn.exec('SELECT pg_sleep(5)') }).to be_nil
    expect(conn.exec('SELECT 2 AS two').first['two']).to eq('2')
    expect(monotonic - t0).to be < 2 # without the cancel: 5 s
    f = spin { conn.exec('SELECT pg_sleep(5)') }
    sleep 0.1
    f.raise(IOError, 'gave up')
    expect { f.await }.to raise_error(IOError, 'gave up')
    expect(conn.exec('SELECT 3 AS three').first['three']).to eq('3')
    expect(monotonic - t0).to be < 3
  ensure
    conn&.close
  end
end
