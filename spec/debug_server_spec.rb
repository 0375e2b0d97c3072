# frozen_string_literal: true

require 'socket'
require 'tmpdir'

# The debug server (lib/polyphony/core/debug_server.rb) and its client
# bin/pdbg, against a program started with POLYPHONY_DEBUG_SOCKET_PATH.
RSpec.describe 'Debug server' do
  def ask(sock, line)
    sock.write("#{line}\n")
    lines = []
    while (l = sock.gets) && l != ".\n"
      lines << l.chomp
    end
    lines
  end

  it 'shows threads and fibers, stops at a breakpoint, evaluates and continues' do
    dir = Dir.mktmpdir
    path = File.join(dir, 'dbg.sock')
    prog = File.join(dir, 'prog.rb')
    File.write(prog, <<~RUBY)
      require 'polyphony'
      $stdout.sync = true
      worker = spin(:worker) do
        loop do
          x = 1 + 1
          sleep 0.02
        end
      end
      puts worker.object_id
      sleep 20
    RUBY
    out_r, out_w = IO.pipe
    pid = Process.spawn({ 'POLYPHONY_DEBUG_SOCKET_PATH' => path }, SpecHelpers::RUBY, '-I', SpecHelpers::LIB, prog,
                        out: out_w)
    out_w.close
    worker_id = out_r.gets.to_i
    expect(File.stat(path).mode & 0o777).to eq(0o600)
    sock = UNIXSocket.new(path)
    expect(ask(sock, 'threads').first).to match(/\A\d+ main sleep\z/)
    fibers = ask(sock, 'fibers')
    expect(fibers).to include(a_string_matching(/#{worker_id} :worker .*prog\.rb:3/))
    expect(ask(sock, 'break prog.rb:6')).to eq(['breakpoint at prog.rb:6'])
    expect(sock.gets).to match(/\Astopped at .*prog\.rb:6 in thread \d+, fiber #{worker_id}\n\z/)
    expect(sock.gets).to eq(".\n")
    expect(ask(sock, 'eval x + 40')).to eq(['42'])
    expect(ask(sock, 'where').first).to end_with('prog.rb:6')
    trace = ask(sock, "backtrace #{worker_id}")
    expect(trace).to include('spun at:', a_string_matching(/prog\.rb:3/))
    expect(ask(sock, 'continue')).to eq(['continued'])
    expect(ask(sock, 'where')).to eq(['nothing is stopped'])
    expect(ask(sock, 'eval 6 * 7')).to eq(['42'])
    expect(ask(sock, 'backtrace 12345')).to eq(['12345 is not a fiber'])
    expect(ask(sock, 'nope').first).to start_with('unknown command')
    expect(ask(sock, 'eval raise "x"')).to eq(['error: RuntimeError: x'])
    sock.write("quit\n")
    sock.close

    client_out = IO.popen([SpecHelpers::RUBY, File.expand_path('../bin/pdbg', __dir__), path], 'r+') do |io|
      io.write("fibers\nquit\n")
      io.close_write
      io.read
    end
    expect(client_out).to include(':worker')
  ensure
    Process.kill('KILL', pid) if pid
    Process.wait(pid) if pid
    FileUtils.rm_rf(dir) if dir
  end

  it 'needs a socket path' do
    expect { Polyphony.start_debug_server(nil) }.to raise_error(ArgumentError)
  end
end
