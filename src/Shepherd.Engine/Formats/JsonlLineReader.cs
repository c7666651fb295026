using System.Buffers;

namespace Shepherd.Engine.Formats;

/// <summary>What <see cref="JsonlLineReader.ReadAsync"/> found next.</summary>
public enum LineKind
{
    /// <summary>A complete line is in <see cref="JsonlLineReader.Current"/>.</summary>
    Line,

    /// <summary>The line was longer than the limit; it was skipped and nothing of it is held.</summary>
    TooLong,

    /// <summary>The stream has ended.</summary>
    End,
}

/// <summary>
/// Reads a JSONL stream one line at a time, holding at most one line plus a read buffer in
/// memory, so a file of any size streams through. Strips a leading UTF-8 byte order mark and
/// the carriage return of CRLF line ends; counts lines from 1.
/// </summary>
public sealed class JsonlLineReader : IDisposable
{
    private const int InitialBufferSize = 64 * 1024;
    private static readonly byte[] Utf8Bom = [0xEF, 0xBB, 0xBF];

    private readonly Stream _stream;
    private readonly int _maxLineBytes;
    private byte[] _buffer;
    private int _start;
    private int _scanned;
    private int _end;
    private bool _eof;
    private bool _atStreamStart = true;

    /// <summary>A reader of <paramref name="stream"/> whose lines hold at most <paramref name="maxLineBytes"/> bytes.</summary>
    public JsonlLineReader(Stream stream, int maxLineBytes)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLineBytes, 1);
        _stream = stream;
        _maxLineBytes = maxLineBytes;
        _buffer = ArrayPool<byte>.Shared.Rent(Math.Min(InitialBufferSize, maxLineBytes + 2));
    }

    /// <summary>The 1-based number of the line last returned.</summary>
    public long LineNumber { get; private set; }

    /// <summary>The bytes of the line last returned, without its line end; valid until the next read.</summary>
    public ReadOnlyMemory<byte> Current { get; private set; }

    /// <summary>Bytes consumed from the stream so far.</summary>
    public long BytesRead { get; private set; }

    /// <summary>Reads the next line into <see cref="Current"/>, or says that it was too long or that the stream ended.</summary>
    public async ValueTask<LineKind> ReadAsync(CancellationToken cancellationToken)
    {
        var skipping = false;
        while (true)
        {
            var newline = Array.IndexOf(_buffer, (byte)'\n', _scanned, _end - _scanned);
            if (newline >= 0)
            {
                LineNumber++;
                _atStreamStart = false;
                if (skipping)
                {
                    _start = _scanned = newline + 1;
                    Current = ReadOnlyMemory<byte>.Empty;
                    return LineKind.TooLong;
                }

                var length = newline - _start;
                if (length > 0 && _buffer[newline - 1] == (byte)'\r')
                {
                    length--;
                }

                if (length > _maxLineBytes)
                {
                    _start = _scanned = newline + 1;
                    Current = ReadOnlyMemory<byte>.Empty;
                    return LineKind.TooLong;
                }

                Current = new ReadOnlyMemory<byte>(_buffer, _start, length);
                _start = _scanned = newline + 1;
                return LineKind.Line;
            }

            _scanned = _end;
            if (_eof)
            {
                if (_start == _end && !skipping)
                {
                    Current = ReadOnlyMemory<byte>.Empty;
                    return LineKind.End;
                }

                LineNumber++;
                _atStreamStart = false;
                var length = _end - _start;
                var tooLong = skipping || length > _maxLineBytes;
                Current = tooLong ? ReadOnlyMemory<byte>.Empty : new ReadOnlyMemory<byte>(_buffer, _start, length);
                _start = _scanned = _end;
                return tooLong ? LineKind.TooLong : LineKind.Line;
            }

            if (_end - _start > _maxLineBytes + 1)
            {
                // The line can no longer fit: forget what is held and keep reading to its end.
                skipping = true;
                _start = _scanned = _end = 0;
            }

            await FillAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private async ValueTask FillAsync(CancellationToken cancellationToken)
    {
        if (_start > 0)
        {
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
            _end -= _start;
            _scanned -= _start;
            _start = 0;
        }

        if (_end == _buffer.Length)
        {
            var larger = ArrayPool<byte>.Shared.Rent(Math.Min(_buffer.Length * 2, _maxLineBytes + 2));
            Buffer.BlockCopy(_buffer, 0, larger, 0, _end);
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = larger;
        }

        var read = await _stream.ReadAsync(_buffer.AsMemory(_end), cancellationToken).ConfigureAwait(false);
        BytesRead += read;
        if (read == 0)
        {
            _eof = true;
            return;
        }

        var firstFill = _atStreamStart;
        _end += read;
        if (firstFill && _end >= Utf8Bom.Length)
        {
            _atStreamStart = false;
            if (_buffer.AsSpan(0, Utf8Bom.Length).SequenceEqual(Utf8Bom))
            {
                _start = _scanned = Utf8Bom.Length;
            }
        }
    }

    /// <summary>Gives the read buffer back to the pool; the stream is the caller's.</summary>
    public void Dispose()
    {
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = [];
    }
}
