# frozen_string_literal: true

# Exception extensions: provenance and cross-fiber backtraces.
RSpec.describe Exception do
  def boom
    raise 'boom'
  end

  it 'knows the fiber it was made in and the gem directory' do
    expect(Exception::POLYPHONY_DIR).to eq(File.expand_path('../lib', __dir__))
    f = spin { [RuntimeError.new('x')] }
    e = f.await.first
    expect(e.raising_fiber).to equal(f)
    expect(IOError.new.raising_fiber).to equal(Fiber.current)
    expect(KeyError.new('k', receiver: {}, key: :a).key).to eq(:a)
  end

  it 'appends the spin sites of the raising fiber and its parents, without the gem frames' do
    child_line = __LINE__ + 2
    grandchild_line = __LINE__ + 2
    child = spin(:child) do
      spin(:grandchild) { boom }.await
    end
    error = begin
      child.await
    rescue RuntimeError => e
      e
    end
    trace = error.backtrace
    expect(error.raising_fiber.tag).to eq(:grandchild)
    expect(trace.first).to include("in `boom'")
    expect(trace.grep(/exception_spec\.rb:#{grandchild_line}/).size).to be >= 2
    expect(trace.grep(/exception_spec\.rb:#{child_line}/)).not_to be_empty
    expect(trace.grep(%r{lib/polyphony/})).to be_empty
    expect(trace).to eq(error.backtrace)
  end

  it 'leaves backtraces alone when sanitizing is disabled' do
    Exception.__disable_sanitized_backtrace__ = true
    error = spin { boom }.then do |f|
      f.await
    rescue RuntimeError => e
      e
    end
    error.backtrace
    expect(error.backtrace).to eq(error.orig_backtrace)
  ensure
    Exception.__disable_sanitized_backtrace__ = nil
  end

  it 'has no backtrace until raised' do
    e = RuntimeError.new('never raised')
    expect(e.backtrace).to be_nil
    expect(e.backtrace).to be_nil
  end
end
