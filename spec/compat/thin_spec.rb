# frozen_string_literal: true

require 'net/http'

# thin (Debian's thin, on EventMachine) under the gem, in a child process:
# its own SIGTERM/SIGINT traps run although EventMachine's loop never
# reaches a switchpoint; and the gem's default SIGTERM lands in a busy loop.
RSpec.describe 'Signals in code that never reaches a switchpoint' do
  def wait_exit(pid, secs)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + secs
    loop do
      _, status = Process.waitpid2(pid, Process::WNOHANG)
      return status if status
      return nil if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.02
    end
  end

  def spawn_ruby(code)
    r, w = IO.pipe
    pid = Process.spawn(SpecHelpers::RUBY, '-I', SpecHelpers::LIB, '-e', code, out: w, err: File::NULL)
    w.close
    line = r.gets
    [pid, line]
  ensure
    r&.close
  end

  def finish(pid)
    return unless pid

    Process.kill('KILL', pid)
    Process.wait(pid)
  rescue Errno::ESRCH, Errno::ECHILD
    nil
  end

  %w[TERM INT].each do |signal|
    it "stops thin (EventMachine) on SIG#{signal}" do
      pid, line = spawn_ruby(<<~RUBY)
        require 'polyphony'
        require 'thin'
        server = TCPServer.new('127.0.0.1', 0)
        port = server.addr[1]
        server.close
        app = ->(_env) { [200, { 'content-type' => 'text/plain' }, ['ok']] }
        Thin::Logging.silent = true
        thin = Thin::Server.new('127.0.0.1', port, app, signals: true)
        EM.next_tick { $stdout.puts port; $stdout.flush }
        thin.start
      RUBY
      port = line.to_i
      expect(Net::HTTP.get(URI("http://127.0.0.1:#{port}/"))).to eq('ok')
      Process.kill(signal, pid)
      expect(wait_exit(pid, 3)).not_to be_nil, "thin still running 3 s after SIG#{signal}"
      pid = nil
    ensure
      finish(pid)
    end
  end

  it 'raises SystemExit on SIGTERM in a main fiber busy computing' do
    pid, = spawn_ruby(<<~RUBY)
      require 'polyphony'
      $stdout.puts 'busy'
      $stdout.flush
      x = 0
      loop { x += 1 }
    RUBY
    sleep 0.1
    Process.kill('TERM', pid)
    status = wait_exit(pid, 3)
    expect(status).not_to be_nil, 'still computing 3 s after SIGTERM'
    expect(status.exitstatus).to eq(0)
    pid = nil
  ensure
    finish(pid)
  end
end
