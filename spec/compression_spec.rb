# frozen_string_literal: true

require 'zlib'
require 'stringio'

# IO.gzip, IO.gunzip, IO.deflate, IO.inflate, IO.http1_splice_chunked.
RSpec.describe 'Streaming compression and chunking' do
  let(:data) { ((+'polyphony ') * 5000) + Random.new(1).bytes(20_000) }

  it 'gzips from a String to a String, readable by Zlib, with the header fields asked for' do
    out = +''
    n = IO.gzip(data, out, mtime: Time.at(1_700_000_000), orig_name: 'data.txt', comment: 'hello')
    expect(n).to eq(out.bytesize)
    gz = Zlib::GzipReader.new(StringIO.new(out))
    expect(gz.read.b).to eq(data.b)
    expect([gz.mtime.to_i, gz.orig_name, gz.comment]).to eq([1_700_000_000, 'data.txt', 'hello'])
    out2 = +''
    IO.gzip('x', out2, mtime: false)
    expect(out2.byteslice(4, 4).unpack1('V')).to eq(0)
    expect { IO.gzip('x', 'frozen') }.to raise_error(FrozenError)
  end

  it 'gunzips what gzip and Zlib make, filling info, between pipes, fiber-aware' do
    r, w = IO.pipe
    writer = spin do
      IO.gzip(data, w, orig_name: 'n', comment: 'c', mtime: 1234)
      w.close
    end
    info = {}
    out = +''
    expect(IO.gunzip(r, out, info)).to eq(data.bytesize)
    writer.await
    expect(out.b).to eq(data.b)
    expect(info).to eq(mtime: Time.at(1234), orig_name: 'n', comment: 'c')
    zlib_made = Zlib.gzip('made by zlib')
    expect(IO.gunzip(zlib_made, +'')).to eq(12)
  end

  it 'reads consecutive gzip members with consecutive calls on the same IO' do
    r, w = IO.pipe
    w << Zlib.gzip('first member') << Zlib.gzip('second')
    w.close
    a = +''
    b = +''
    IO.gunzip(r, a)
    IO.gunzip(r, b)
    expect([a, b]).to eq(['first member', 'second'])
    expect { IO.gunzip(r, +'') }.to raise_error(RuntimeError, 'Invalid gzip header')
  end

  it 'deflates and inflates zlib streams, to and from callables' do
    chunks = []
    IO.deflate(data, ->(c) { chunks << c })
    expect(Zlib::Inflate.inflate(chunks.join).b).to eq(data.b)
    source = [chunks.join]
    out = +''
    expect(IO.inflate(->(_max) { source.shift }, out)).to eq(data.bytesize)
    expect(out.b).to eq(data.b)
  end

  it 'computes CRC-32 as Zlib does, and streams natively' do
    expect(Polyphony::Compression.crc32('hello' * 1000)).to eq(Zlib.crc32('hello' * 1000))
    expect(Polyphony::Compression.crc32('def', Polyphony::Compression.crc32('abc'))).to eq(Zlib.crc32('abcdef'))
    expect { Polyphony::Compression.crc32(nil) }.to raise_error(TypeError)
    d = Polyphony::Compression::Deflater.new(false)
    packed = d.deflate(data) + d.finish
    expect(Zlib::Inflate.inflate(packed).b).to eq(data.b)
    i = Polyphony::Compression::Inflater.new(false)
    expect(i.inflate("#{packed}trailing").b).to eq(data.b)
    expect(i.finished?).to be(true)
    expect(i.total_in).to eq(packed.bytesize)
  end

  it 'raises the documented errors for bad input' do
    expect { IO.gunzip('not gzip at all', +'') }.to raise_error(RuntimeError, 'Invalid gzip header')
    expect { IO.inflate('garbage!', +'') }.to raise_error(RuntimeError, /zlib error/)
    expect { IO.gzip(42, +'') }.to raise_error(RuntimeError, 'Unsupported read method')
    expect { IO.gzip('x', 42) }.to raise_error(RuntimeError, 'Unsupported write method')
    truncated = Zlib.gzip(data).byteslice(0, 100)
    expect { IO.gunzip(truncated, +'') }.to raise_error(RuntimeError, /zlib error/)
  end

  it 'splices as HTTP/1.1 chunked encoding' do
    src_r, src_w = IO.pipe
    dest_r, dest_w = IO.pipe
    spin do
      src_w << 'hello world'
      src_w.close
    end
    expect(IO.http1_splice_chunked(src_r, dest_w, 4)).to equal(dest_w)
    dest_w.close
    expect(dest_r.read).to eq("4\r\nhell\r\n4\r\no wo\r\n3\r\nrld\r\n0\r\n\r\n")
    expect { IO.http1_splice_chunked(src_r, dest_w, 0) }.to raise_error(ArgumentError)
  end
end
