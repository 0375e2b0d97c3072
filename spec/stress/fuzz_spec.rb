# frozen_string_literal: true

# Bad input at the native boundary and in the constructs: every public
# method of Polyphony::Backend, the Polyphony module functions, the Fiber
# extensions, the Kernel globals and the constructs, called with wrong types,
# nil, negative and huge numbers, NaN, frozen strings, closed IOs and foreign
# objects (spec/support/fuzz_driver.rb), must raise a Ruby exception of a
# documented class: never panic, abort, hang, or fail with NoMethodError on
# some internal object. Each group runs in a child process, so that a crash
# is caught and reported with the call that caused it.
FUZZ_DRIVER = File.expand_path('../support/fuzz_driver.rb', __dir__)

RSpec.describe 'Bad input at the native boundary (fuzz)' do
  # What bad input may raise. Not allowed: NoMethodError and NameError (an
  # unchecked argument reached some method), RuntimeError (a bare `raise`),
  # and anything that is not a StandardError. `IO::EAGAINWaitReadable` is
  # what a `*_nonblock` call raises when there is nothing to read (as
  # stdlib's).
  allowed = /\A(ok|timeout|ArgumentError|TypeError|RangeError|FloatDomainError|IOError|EOFError|
              Errno::\w+|IO::EAGAINWait(Readable|Writable)|ThreadError|FiberError|FrozenError|
              LocalJumpError|ClosedQueueError|Polyphony::Pipe::ClosedPipeError)\z/x
  # Where the API documents RuntimeError for bad input (as Polyphony's):
  # `Backend#chain` with an unknown op or arity ("Invalid op specified or
  # bad op arity"), and the compression functions ("Unsupported read
  # method", "Unsupported write method", "Invalid gzip header", "zlib
  # error: ...").
  runtime_error_allowed = /\A\w+ (Backend#chain|IO\.#(gzip|gunzip|deflate|inflate)) /

  [%w[backend], %w[module], %w[fiber], %w[kernel], %w[constructs], %w[io], %w[io_objects],
   %w[backend gc_stress]].each do |args|
    it "raises only documented exceptions for bad input (#{args.join(', ')})" do
      out, err, status = Open3.capture3(
        { 'POLYPHONY_BACKEND' => backend.kind.to_s },
        'timeout', '-s', 'KILL', '180', SpecHelpers::RUBY, '-I', SpecHelpers::LIB, FUZZ_DRIVER, *args
      )
      lines = out.lines.map(&:chomp)
      last_call = lines.reverse.find { |l| l.start_with?('call ') }
      expect(status.success?).to be(true), "driver died (#{status}) at: #{last_call}\n#{err[-2000..] || err}"
      expect(lines.last).to eq('finished'), "driver stopped at: #{last_call}"
      expect(err).not_to match(/panicked|\[BUG\]|fatal/)
      bad = []
      lines.each_cons(2) do |call, done|
        next unless call.start_with?('call ') && done.start_with?('done ')

        outcome = done.delete_prefix('done ')
        label = call.delete_prefix('call ')
        next if outcome.match?(allowed) || (outcome == 'RuntimeError' && label.match?(runtime_error_allowed))

        bad << "#{label} => #{outcome}"
      end
      expect(bad).to be_empty, "#{bad.size} calls raised the wrong class:\n#{bad.first(20).join("\n")}"
      expect(lines.count { |l| l.start_with?('call ') }).to be > 150
    end
  end
end
