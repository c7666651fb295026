using System.Buffers;
using System.Text.Json;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;

namespace Shepherd.Engine.Native;

/// <summary>A job being written: its lines go to a temporary file, within the provider's limits.</summary>
internal sealed class NativeJobBuilder : IDisposable
{
    private readonly FileStream _file;
    private readonly ArrayBufferWriter<byte> _line = new(4096);
    private readonly Utf8JsonWriter _json;
    private readonly List<ClaimedItem> _items = [];
    private long _bytes;

    public NativeJobBuilder(NativeProvider provider, BatchRecord batch)
    {
        Provider = provider;
        Batch = batch;
        _file = new FileStream(
            Path.Combine(Path.GetTempPath(), $"shepherd-native-{Guid.NewGuid():N}.jsonl"),
            FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 64 * 1024, FileOptions.DeleteOnClose);
        _json = new Utf8JsonWriter(_line, JsonWriterExtensions.Options);
        _file.Write(provider.Opening);
        _bytes = provider.Opening.Length + provider.Closing.Length;
    }

    public NativeProvider Provider { get; }

    public BatchRecord Batch { get; }

    public List<ClaimedItem> Items => _items;

    public int Count => _items.Count;

    /// <summary>The most the job's items may cost, at the batch price.</summary>
    public long WorstNanos { get; private set; }

    /// <summary>True when the item's line fits in this job (an empty job takes any one line).</summary>
    public bool Fits(ClaimedItem item)
    {
        if (_items.Count == 0)
        {
            return true;
        }

        var estimate = item.Body.Length + item.Url.Length + 96 + Provider.Separator.Length;
        return _items.Count < Provider.MaxLines && _bytes + estimate <= Provider.MaxBytes;
    }

    /// <summary>Adds an item's line; <paramref name="worstNanos"/> is the most it may cost.</summary>
    public void Add(ClaimedItem item, long worstNanos)
    {
        WorstNanos += worstNanos;
        _line.ResetWrittenCount();
        _json.Reset();
        Provider.WriteLine(_json, NativeProvider.CustomIdOf(item.ItemId), item.Url, item.Body);
        _json.Flush();
        if (_items.Count > 0)
        {
            _file.Write(Provider.Separator);
            _bytes += Provider.Separator.Length;
        }

        _file.Write(_line.WrittenSpan);
        _bytes += _line.WrittenCount;
        _items.Add(Lean(item));
    }

    /// <summary>Closes the job's text and returns it from its start; the stream stays owned by the builder.</summary>
    public NonClosing Finish()
    {
        _file.Write(Provider.Closing);
        _file.Flush();
        _file.Position = 0;
        return new NonClosing(_file);
    }

    public void Dispose()
    {
        _json.Dispose();
        _file.Dispose();
    }

    /// <summary>A lease kept for a job: the body was sent and is not needed again.</summary>
    public static ClaimedItem Lean(ClaimedItem item) => item with { Body = [] };
}

/// <summary>A view of a stream that leaves it open when disposed (an HTTP content disposes what it sends).</summary>
internal sealed class NonClosing(Stream inner) : Stream
{
    public override bool CanRead => true;

    public override bool CanSeek => inner.CanSeek;

    public override bool CanWrite => false;

    public override long Length => inner.Length;

    public override long Position { get => inner.Position; set => inner.Position = value; }

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(buffer, cancellationToken);

    public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
