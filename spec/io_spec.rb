# frozen_string_literal: true

require_relative 'spec_helper'
require 'tempfile'
require 'zlib'
require 'objspace'
require 'stringio'

RSpec.describe 'IO (fiber-aware, stdlib semantics)' do
  def pipe_with(data, close: true)
    r, w = IO.pipe
    w.orig_write(data) unless data.empty?
    w.close if close
    [r, w]
  end

  describe '#read' do
    it 'reads everything with no length, "" at EOF (differences.md: read(n) at EOF)' do
      r, = pipe_with("abc\ndef")
      expect(r.read).to eq("abc\ndef")
      expect(r.read).to eq('')
    end

    it 'returns nil at EOF for a positive length (differences.md: read(n) at EOF), so while-read loops end' do
      r, = pipe_with('x' * 10_000)
      chunks = []
      while (chunk = r.read(4096))
        chunks << chunk.bytesize
      end
      expect(chunks).to eq([4096, 4096, 1808])
      expect(r.read(1)).to be_nil
    end

    it 'returns "" for a zero length, even at EOF' do
      r, = pipe_with('')
      expect(r.read(0)).to eq('')
    end

    it 'returns exactly len bytes and keeps the rest buffered' do
      r, = pipe_with('abcdef')
      expect(r.read(2)).to eq('ab')
      expect(r.read(3)).to eq('cde')
      expect(r.read).to eq('f')
    end

    it 'waits until len bytes arrived or EOF, letting other fibers run' do
      r, w = IO.pipe
      spin do
        w << 'ab'
        sleep 0.02
        w << 'cd'
        w.close
      end
      expect(r.read(3)).to eq('abc')
      expect(r.read(3)).to eq('d')
    end

    it 'fills a given buffer, replacing its contents; nil and an emptied buffer at EOF' do
      r, = pipe_with('hello')
      buf = +'old contents'
      expect(r.read(3, buf)).to equal(buf)
      expect(buf).to eq('hel')
      expect(r.read(10, buf)).to eq('lo')
      expect(r.read(10, buf)).to be_nil
      expect(buf).to eq('')
    end

    it 'places data at a buffer position (negative = append)' do
      r, = pipe_with('1234')
      buf = +'abc'
      r.read(2, buf, 1)
      expect(buf).to eq('a12')
      r.read(2, buf, -1)
      expect(buf).to eq('a1234')
    end

    it 'returns strings in the external encoding for read(), binary for read(n)' do
      Tempfile.create('enc') do |f|
        f.orig_write('héllo')
        f.flush
        File.open(f.path, 'r:UTF-8') do |io|
          expect(io.read.encoding).to eq(Encoding::UTF_8)
        end
        File.open(f.path, 'r:UTF-8') do |io|
          expect(io.read(2).encoding).to eq(Encoding::BINARY)
        end
      end
    end

    it 'rejects bad lengths and buffers with clear errors' do
      r, = pipe_with('abc')
      expect { r.read(-1) }.to raise_error(ArgumentError, /negative length/)
      expect { r.read('x') }.to raise_error(ArgumentError)
      expect { r.read(:x) }.to raise_error(TypeError)
      expect { r.read(2**64) }.to raise_error(RangeError)
      expect { r.read(2, 'frozen') }.to raise_error(FrozenError)
      expect(r.read(2**40)).to eq('abc')
    end

    it 'raises IOError on a closed stream' do
      r, = pipe_with('abc')
      r.close
      expect { r.read }.to raise_error(IOError, /closed stream/)
      expect { r.read(1) }.to raise_error(IOError, /closed stream/)
      expect { r.gets }.to raise_error(IOError, /closed stream/)
    end

    it 'reads files' do
      Tempfile.create('read') do |f|
        f.write('file contents')
        f.flush
        f.rewind
        expect(f.read(4)).to eq('file')
        expect(f.read).to eq(' contents')
        expect(f.read(1)).to be_nil
      end
    end
  end

  describe '#readpartial' do
    it 'returns what is available, up to maxlen' do
      r, w = IO.pipe
      w << 'abc'
      expect(r.readpartial(2)).to eq('ab')
      expect(r.readpartial(10)).to eq('c')
    end

    it 'raises EOFError at EOF, or returns nil when raise_on_eof is false' do
      r, = pipe_with('')
      expect { r.readpartial(10) }.to raise_error(EOFError)
      expect(r.readpartial(10, +'', 0, false)).to be_nil
    end

    it 'serves bytes buffered by gets first (one shared buffer)' do
      r, = pipe_with("line\nrest")
      expect(r.gets).to eq("line\n")
      expect(r.readpartial(100)).to eq('rest')
    end

    it 'rejects a negative maxlen' do
      r, = pipe_with('x')
      expect { r.readpartial(-5) }.to raise_error(ArgumentError)
    end
  end

  it 'reads a Tempfile back after reopening it' do
    require 'tempfile'
    t = Tempfile.new('polyphony')
    t.write("hello tempfile\nsecond")
    t.open
    expect(t.gets).to eq("hello tempfile\n")
    expect(t.read).to eq('second')
    t << 'more'
    t.flush
    t.open
    expect(t.read).to eq("hello tempfile\nsecondmore") # as stock Ruby: reopened from the start
  ensure
    t&.close!
  end

  it 'Kernel#gets reads the files named in ARGV in turn, then $stdin' do
    dir = Dir.mktmpdir
    a = File.join(dir, 'a.txt')
    b = File.join(dir, 'b.txt')
    File.write(a, "a1\na2\n")
    File.write(b, 'b1')
    code = <<~RUBY
      require 'polyphony'
      ARGV.replace(#{[a, b, a].inspect})
      lines = []
      while (line = gets)
        lines << line
      end
      p lines
      ARGV.replace([#{File.join(dir, 'missing').inspect}])
      begin
        gets
      rescue Errno::ENOENT
        puts 'ENOENT'
      end
    RUBY
    out, err, status = run_ruby(code, stdin: "from stdin\n")
    expect(err).to eq('')
    expect(status).to be_success
    expect(out).to eq(%(["a1\\n", "a2\\n", "b1", "a1\\n", "a2\\n", "from stdin\\n"]\nENOENT\n))
  ensure
    FileUtils.rm_rf(dir) if dir
  end

  describe '#gets and friends' do
    it 'returns lines, and the unterminated last line (differences.md: unterminated last line)' do
      r, = pipe_with("a\nb\nc")
      expect([r.gets, r.gets, r.gets, r.gets]).to eq(["a\n", "b\n", 'c', nil])
    end

    it 'honours a separator, nil (everything), a limit and chomp:' do
      r, = pipe_with('a;b;cdefgh')
      expect(r.gets(';')).to eq('a;')
      expect(r.gets(';', chomp: true)).to eq('b')
      expect(r.gets(3)).to eq('cde')
      expect(r.gets(nil)).to eq('fgh')
      r, = pipe_with("x\r\ny\n")
      expect(r.gets(chomp: true)).to eq('x')
      expect(r.gets(chomp: true)).to eq('y')
    end

    it 'finds lines split across many reads' do
      r, w = IO.pipe
      spin do
        "one line\nsecond".each_char do |c|
          w << c
          snooze
        end
        w.close
      end
      expect(r.gets).to eq("one line\n")
      expect(r.gets).to eq('second')
    end

    it 'each_line yields every line, tail included; without a block it is an Enumerator' do
      r, = pipe_with("1\n2\n3")
      expect(r.each_line.to_a).to eq(%W[1\n 2\n 3])
      r, = pipe_with("1\n2\n")
      lines = []
      expect(r.each_line(chomp: true) { |l| lines << l }).to equal(r)
      expect(lines).to eq(%w[1 2])
    end

    it 'readline raises EOFError at the end; readlines collects' do
      r, = pipe_with("a\nb\n")
      expect(r.readlines).to eq(%W[a\n b\n])
      expect { r.readline }.to raise_error(EOFError)
    end

    it 'getc reads characters (multibyte too), getbyte bytes, ungetc pushes back' do
      Tempfile.create('chars') do |f|
        f.orig_write('é!')
        f.flush
        File.open(f.path, 'r:UTF-8') do |io|
          expect(io.getc).to eq('é')
          io.ungetc('x')
          expect(io.getc).to eq('x')
          expect(io.getbyte).to eq(33)
          expect(io.getc).to be_nil
          expect(io.getbyte).to be_nil
          expect(io.eof?).to be(true)
        end
      end
    end

    it 'mixed readers over many buffered chunks agree with StringIO' do
      data = Array.new(3000) { |i| "line #{i} #{'x' * (i % 17)}\n" }.join
      r, w = IO.pipe
      spin do
        w << data
        w.close
      end
      ref = StringIO.new(data.b)
      ops = [
        ->(io) { io.gets },
        ->(io) { io.getbyte },
        ->(io) { io.read(5) },
        lambda do |io|
          b = io.getbyte
          io.ungetbyte(b) if b
          io.getc
        end
      ]
      got = []
      want = []
      6000.times do |i|
        got << ops[i % 4].call(r).then { |v| v.is_a?(String) ? v.b : v }
        want << ops[i % 4].call(ref).then { |v| v.is_a?(String) ? v.b : v }
      end
      got << r.read.b
      want << ref.read
      expect(got).to eq(want)
    end

    it 'returns lines in the external encoding' do
      Tempfile.create('lines') do |f|
        f.orig_write("ü\n")
        f.flush
        File.open(f.path, 'r:UTF-8') { |io| expect(io.gets.encoding).to eq(Encoding::UTF_8) }
      end
    end
  end

  describe '#read_nonblock / #write_nonblock' do
    it 'returns :wait_readable with exception: false, raises IO::WaitReadable otherwise' do
      r, w = IO.pipe
      expect(r.read_nonblock(10, exception: false)).to eq(:wait_readable)
      expect { r.read_nonblock(10) }.to raise_error(IO::WaitReadable)
      w << 'data'
      expect(r.read_nonblock(10, exception: false)).to eq('data')
      w.close
      expect(r.read_nonblock(10, exception: false)).to be_nil
      expect { r.read_nonblock(10) }.to raise_error(EOFError)
    end

    it "takes Polyphony's positional options Hash too" do
      r, w = IO.pipe
      expect(r.read_nonblock(10, nil, { exception: false })).to eq(:wait_readable)
      expect { r.read_nonblock(10, nil, {}) }.to raise_error(IO::WaitReadable)
      expect(w.write_nonblock('ab', { exception: false })).to eq(2)
      expect(w.write_nonblock('cd', {})).to eq(2)
      expect(r.read_nonblock(10, +'', nil)).to eq('abcd')
    end

    it 'serves buffered bytes first' do
      r, = pipe_with("a\nbc", close: false)
      r.gets
      expect(r.read_nonblock(10)).to eq('bc')
    end

    it 'write_nonblock writes what fits and says :wait_writable when full' do
      _r, w = IO.pipe
      n = w.write_nonblock('x' * 1_000_000, exception: false)
      expect(n).to be_between(1, 999_999)
      expect(w.write_nonblock('y', exception: false)).to eq(:wait_writable)
    end
  end

  describe 'writing' do
    it 'write returns the total byte count of all its arguments' do
      r, w = IO.pipe
      expect(w.write('ab', 'cd', 5)).to eq(5)
      expect(w.write('')).to eq(0)
      expect(w << 'x' << 'y').to equal(w)
      w.close
      expect(r.read).to eq('abcd5xy')
    end

    it 'puts/print/printf/putc reach the fiber-aware write' do
      r, w = IO.pipe
      w.puts('a', ['b', ['c']], nil, 1)
      w.puts
      w.print('p', 'q')
      w.printf('%03d', 7)
      w.putc('!')
      w.close
      expect(r.read).to eq("a\nb\nc\n\n1\n\npq007!")
    end

    it 'streams a large write while the reader drains it (no deadlock on a full pipe)' do
      r, w = IO.pipe
      data = Random.bytes(5_000_000)
      writer = spin do
        w.write(data)
        w.close
      end
      got = r.read
      expect(got.bytesize).to eq(data.bytesize)
      expect(got.b == data).to be(true)
      writer.await
    end

    it 'raises EPIPE in the writing fiber only when the reader is gone' do
      r, w = IO.pipe
      r.close
      other = spin { :fine }
      expect { w.write('x' * 100_000) }.to raise_error(Errno::EPIPE)
      expect(other.await).to eq(:fine)
    end

    it 'raises IOError on a closed stream and for an IO not opened for writing' do
      r, w = IO.pipe
      w.close
      expect { w.write('x') }.to raise_error(IOError, /closed stream/)
      expect { r.write('x') }.to raise_error(IOError, /not opened for writing/)
    end

    it 'writes a String through the fast path and other arguments through the full one' do
      r, w = IO.pipe
      expect(w.write('abc')).to eq(3)
      expect(w.write(:sym, 1, nil)).to eq(4)
      expect(w.write).to eq(0)
      w.set_encoding('UTF-16LE')
      expect(w.write('hé')).to eq(4)
      w.close
      expect(r.read.b).to eq('abcsym1'.b + 'hé'.encode('UTF-16LE').b)
    end

    it 'leaves newline conversion to Ruby' do
      Tempfile.create('crlf') do |f|
        File.open(f.path, 'w', newline: :crlf) { |io| io.write("a\nb\n") }
        expect(File.binread(f.path)).to eq("a\r\nb\r\n")
      end
    end

    it 'keeps the order of bytes already in the IO write buffer' do
      Tempfile.create('wbuf') do |f|
        File.open(f.path, 'w') do |io|
          io.sync = false
          io.orig_write('12') # stdlib IO#write: kept in Ruby's write buffer
          io.write('3')
          io << '4'
        end
        expect(File.read(f.path)).to eq('1234')
      end
    end

    it 'sends to sockets and keeps the bytes of a string mutated while its write waits' do
      a, b = UNIXSocket.pair
      big = 'x' * 2_000_000
      writer = spin { a.write(big) }
      snooze
      big.replace('y')
      got = +''
      got << b.readpartial(65_536) while got.bytesize < 2_000_000
      expect(writer.await).to eq(2_000_000)
      expect(got).to eq('x' * 2_000_000)
      expect(a.write('z' * 10)).to eq(10)
      expect(b.readpartial(10)).to eq('z' * 10)
    end

    it 'writes files, also in append mode' do
      Tempfile.create('w') do |f|
        f.write("one\n")
        f.puts('two')
        f.flush
        File.open(f.path, 'a') { |a| a.write('three') }
        expect(File.read(f.path)).to eq("one\ntwo\nthree")
      end
    end
  end

  describe 'waiting' do
    it 'every blocking read is a switchpoint: other fibers keep running' do
      r, w = IO.pipe
      spin do
        sleep 0.15
        w << "done\n"
      end
      line, ticks = with_ticker { r.gets }
      expect(line).to eq("done\n")
      expect(ticks).to be >= 5
    end

    it 'wait_readable returns self when readable, nil after a timeout' do
      r, w = IO.pipe
      expect(r.wait_readable(0.02)).to be_nil
      w << 'x'
      expect(r.wait_readable(1)).to equal(r)
      expect(w.wait_writable(1)).to equal(w)
    end

    it 'wait_readable answers at once when gets left bytes buffered' do
      r, = pipe_with("a\nb", close: false)
      r.gets
      expect(r.wait_readable(0)).to equal(r)
    end

    it 'a timeout interrupts a blocked read' do
      r, = IO.pipe
      expect(move_on_after(0.05) { r.read(10) }).to be_nil
    end

    it 'closing an IO wakes the fibers waiting on it with IOError' do
      r, = IO.pipe
      waiter = spin { r.read(10) }
      snooze
      expect(r.close).to be_nil
      expect { waiter.await }.to raise_error(IOError, /closed/)
      expect(r.close).to be_nil
    end

    it 'never loses bytes a read consumed just as its fiber was stopped' do
      20.times do
        r, w = IO.pipe
        reader = spin { r.readpartial(10) }
        snooze
        w.syswrite('abc')
        reader.stop
        reader.await
        expect(reader.result).to be_nil.or eq('abc')
        next if reader.result == 'abc'

        expect(move_on_after(1) { r.readpartial(10) }).to eq('abc')
      end
    end
  end

  describe 'read_loop / feed_loop' do
    it 'read_loop yields chunks until EOF and returns the IO' do
      r, w = IO.pipe
      spin do
        3.times { |i| (w << "c#{i}") && sleep(0.01) }
        w.close
      end
      chunks = []
      expect(r.read_loop { |d| chunks << d }).to equal(r)
      expect(chunks.join).to eq('c0c1c2')
    end

    it 'read_loop honours maxlen and break' do
      r, = pipe_with('abcdef')
      chunks = []
      r.read_loop(2) do |d|
        chunks << d
        break if chunks.size == 2
      end
      expect(chunks).to eq(%w[ab cd])
      expect(r.read).to eq('ef')
    end

    it 'feed_loop sends each chunk to the receiver' do
      r, = pipe_with('xyz')
      got = []
      r.feed_loop(got, :<<)
      expect(got.join).to eq('xyz')
    end
  end

  describe 'splice, tee, copy_stream' do
    it 'IO.splice moves bytes between pipes; a negative maxlen moves until EOF' do
      r1, w1 = IO.pipe
      r2, w2 = IO.pipe
      w1 << 'splice me'
      w1.close
      expect(IO.splice(r1, w2, -1000)).to eq(9)
      w2.close
      expect(r2.read).to eq('splice me')
    end

    it 'splice_from and tee_from' do
      r1, w1 = IO.pipe
      r2, w2 = IO.pipe
      r3, w3 = IO.pipe
      w1 << 'tee'
      expect(w3.tee_from(r1, 10)).to eq(3)
      expect(w2.splice_from(r1, 10)).to eq(3)
      w2.close
      w3.close
      expect([r2.read, r3.read]).to eq(%w[tee tee])
    end

    it 'IO.double_splice copies a source to a destination until EOF' do
      r1, w1 = IO.pipe
      r2, w2 = IO.pipe
      spin do
        w1 << ('d' * 100_000)
        w1.close
      end
      reader = spin { r2.read }
      expect(IO.double_splice(r1, w2)).to eq(100_000)
      w2.close
      expect(reader.await.bytesize).to eq(100_000)
    end

    it 'IO.copy_stream copies between IOs and paths, with a length and an offset' do
      Tempfile.create('src') do |src|
        src.write('0123456789')
        src.flush
        r, w = IO.pipe
        expect(IO.copy_stream(src.path, w)).to eq(10)
        w.close
        expect(r.read).to eq('0123456789')
        dst = "#{src.path}.copy"
        expect(IO.copy_stream(src.path, dst, 4, 3)).to eq(4)
        expect(File.read(dst)).to eq('3456')
        File.delete(dst)
      end
    end
  end

  describe 'class methods' do
    it 'IO.read/write/binread/binwrite/readlines/foreach keep stdlib signatures' do
      Tempfile.create('cls') do |f|
        expect(IO.write(f.path, "a\nb\n")).to eq(4)
        expect(File.read(f.path)).to eq("a\nb\n")
        expect(IO.read(f.path, 2, 1)).to eq("\nb")
        expect(IO.binread(f.path).encoding).to eq(Encoding::BINARY)
        expect(IO.readlines(f.path, chomp: true)).to eq(%w[a b])
        expect(IO.foreach(f.path).to_a).to eq(%W[a\n b\n])
        IO.binwrite(f.path, 'XY', 1)
        expect(File.read(f.path)).to eq("aXY\n")
        expect(IO.read('|echo piped')).to eq("piped\n")
      end
    end

    it 'IO.popen output is read without blocking other fibers; $? is set' do
      out, ticks = with_ticker { IO.popen('sleep 0.3; echo popen', &:read) }
      expect(out).to eq("popen\n")
      expect(ticks).to be >= 10
      expect($?.success?).to be(true)
    end

    it 'a duplex IO.popen writes through its own write end' do
      io = IO.popen('cat', 'r+')
      io.puts('round trip')
      io.close_write
      expect(io.read).to eq("round trip\n")
      io.close
    end

    it 'File.open with a block reads and writes through the backend' do
      Tempfile.create('blk') do |f|
        File.open(f.path, 'w') { |io| io << 'via block' }
        expect(File.read(f.path)).to eq('via block')
      end
    end
  end

  describe 'positions and encodings' do
    it 'pos, seek and rewind account for bytes read ahead by gets' do
      Tempfile.create('pos') do |f|
        f.orig_write("one\ntwo\nthree\n")
        f.flush
        File.open(f.path) do |io|
          expect(io.gets).to eq("one\n")
          expect(io.pos).to eq(4)
          io.seek(2, IO::SEEK_CUR)
          expect(io.gets).to eq("o\n")
          io.rewind
          expect(io.gets).to eq("one\n")
          io.pos = 8
          expect(io.read).to eq("three\n")
        end
      end
    end

    it 'transcodes like stdlib when the IO has explicit encodings' do
      Tempfile.create('latin') do |f|
        File.open(f.path, 'w:ISO-8859-1') { |io| io.write('café') }
        expect(File.binread(f.path)).to eq("caf\xE9".b)
        File.open(f.path, 'r:ISO-8859-1:UTF-8') do |io|
          line = io.gets
          expect(line).to eq('café')
          expect(line.encoding).to eq(Encoding::UTF_8)
        end
      end
    end
  end

  describe '$stdout / $stderr and Kernel#p' do
    it 'p, puts, print, warn and $stderr writes all come out, in order' do
      out, err, st = run_ruby(<<~RUBY)
        require 'polyphony'
        spin { puts 'from a fiber' }
        p 1
        p 2, 3
        print "printed\n"
        $stdout << "chained" << "\n"
        warn 'warned'
        $stderr.write("err\n")
        snooze
      RUBY
      expect(st).to be_success
      # Each write is a switchpoint, so the fiber's line may come anywhere,
      # but never inside another write.
      expect(out.lines).to include("from a fiber\n")
      expect(out.lines - ["from a fiber\n"]).to eq(%W[1\n 2\n 3\n printed\n chained\n])
      expect(err).to eq("warned\nerr\n")
    end

    it 'writes inside Thread.handle_interrupt(never) (as Kernel#p does) do not hang' do
      out, _err, st = run_ruby(<<~RUBY, timeout: 10)
        require 'polyphony'
        Thread.handle_interrupt(Object => :never) do
          $stdout.write("a\n")
          $stdout.write("b\n")
        end
      RUBY
      expect(st).to be_success
      expect(out).to eq("a\nb\n")
    end
  end

  describe 'STDIN and Kernel#gets' do
    it 'gets from STDIN parks only the main fiber; other fibers keep running' do
      code = <<~RUBY
        require 'polyphony'
        ticks = 0
        spin { loop { sleep 0.01; ticks += 1 } }
        line = gets
        $stdout.puts "\#{line.chomp} \#{ticks}"
      RUBY
      Open3.popen3(SpecHelpers::RUBY, '-I', SpecHelpers::LIB, '-e', code) do |i, o, _e, t|
        sleep 0.4
        i.orig_write("hello\n")
        i.close
        out = o.orig_read
        expect(t.value).to be_success
        word, ticks = out.split
        expect(word).to eq('hello')
        expect(ticks.to_i).to be >= 10
      end
    end

    it 'STDIN.read and $stdin.each_line read everything' do
      out, _err, st = run_ruby(<<~RUBY, stdin: "l1\nl2\n")
        require 'polyphony'
        $stdout.puts $stdin.each_line.map(&:chomp).join(',')
      RUBY
      expect(st).to be_success
      expect(out).to eq("l1,l2\n")
    end
  end

  describe 'GC.stress' do
    it 'reads, gets and writes stay correct under GC.stress' do
      r, w = IO.pipe
      GC.stress = true
      begin
        writer = spin do
          20.times { |i| w.puts("line #{i}") }
          w.close
        end
        lines = r.each_line.to_a
        writer.await
      ensure
        GC.stress = false
      end
      expect(lines.size).to eq(20)
      expect(lines.last).to eq("line 19\n")
    end

    it 'echoes over a socket with read_loop and write under GC.stress, strings sized to the data' do
      a, b = UNIXSocket.pair
      got = []
      GC.stress = true
      begin
        echo = spin { b.read_loop { |data| b.write(data) } }
        client = spin do
          30.times do |i|
            a.write("message #{i}")
            got << a.readpartial(100)
          end
          a.close
        end
        client.await
        echo.await
      ensure
        GC.stress = false
      end
      expect(got).to eq(30.times.map { |i| "message #{i}" })
    end

    it 'gives each read_loop chunk its own string holding just the bytes read' do
      r, w = IO.pipe
      chunks = []
      reader = spin { r.read_loop { |d| chunks << d } }
      sent = +''
      %w[a bb ccc].each do |s|
        w.write(s)
        sent << s
        snooze until chunks.join == sent
      end
      w.close
      reader.await
      expect(chunks.join).to eq('abbccc')
      expect(chunks.map(&:encoding).uniq).to eq([Encoding::BINARY])
      expect(chunks.map(&:object_id).uniq.size).to eq(chunks.size)
      expect(ObjectSpace.memsize_of(chunks.first)).to be < 1024
    end
  end
end

RSpec.describe Polyphony::Pipe do
  it 'reads what was written; close ends it with EOF (read → nil)' do
    pipe = Polyphony.pipe
    expect(pipe.fds.size).to eq(2)
    spin do
      pipe << 'abc'
      pipe.puts('def')
      pipe.close
    end
    expect(pipe.gets).to eq("abcdef\n")
    expect(pipe.read).to be_nil
    expect(pipe.closed?).to be(true)
  end

  it 'raises on writes after close and on a second close' do
    pipe = Polyphony::Pipe.new
    pipe.close
    expect { pipe << 'x' }.to raise_error(Polyphony::Pipe::ClosedPipeError)
    expect { pipe.close }.to raise_error(RuntimeError, /already closed/)
  end

  it 'is accepted by the backend primitives' do
    pipe = Polyphony::Pipe.new
    Polyphony.backend_write(pipe, 'raw')
    expect(Polyphony.backend_read(pipe, +'', 3, true, 0)).to eq('raw')
    r, w = IO.pipe
    w << 'spliced'
    w.close
    expect(pipe.splice_from(r, 100)).to eq(7)
    pipe.close
    expect(pipe.read(7)).to eq('spliced')
  end
end
