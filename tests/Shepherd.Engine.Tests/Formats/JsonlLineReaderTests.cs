using System.Text;
using Shepherd.Engine.Formats;

namespace Shepherd.Engine.Tests.Formats;

public sealed class JsonlLineReaderTests
{
    private static async Task<List<(LineKind Kind, long Line, string Text)>> ReadAllAsync(byte[] data, int maxLineBytes = 1024, int chunk = int.MaxValue)
    {
        using var reader = new JsonlLineReader(new TrickleStream(data, chunk), maxLineBytes);
        var lines = new List<(LineKind, long, string)>();
        LineKind kind;
        while ((kind = await reader.ReadAsync(TestContext.Current.CancellationToken)) != LineKind.End)
        {
            lines.Add((kind, reader.LineNumber, Encoding.UTF8.GetString(reader.Current.Span)));
        }

        return lines;
    }

    [Fact]
    public async Task Reads_LfAndCrlfLines_WithoutLineEnds()
    {
        var lines = await ReadAllAsync("a\nbb\r\nccc"u8.ToArray());

        Assert.Equal([(LineKind.Line, 1L, "a"), (LineKind.Line, 2L, "bb"), (LineKind.Line, 3L, "ccc")], lines);
    }

    [Fact]
    public async Task StripsByteOrderMark_OnlyAtStart()
    {
        var lines = await ReadAllAsync([0xEF, 0xBB, 0xBF, (byte)'x', (byte)'\n', (byte)'y']);

        Assert.Equal(["x", "y"], lines.Select(l => l.Text));
    }

    [Fact]
    public async Task CountsBlankLines_SoLaterNumbersMatchTheFile()
    {
        var lines = await ReadAllAsync("a\n\n\nb\n"u8.ToArray());

        Assert.Equal([(LineKind.Line, 1L, "a"), (LineKind.Line, 2L, ""), (LineKind.Line, 3L, ""), (LineKind.Line, 4L, "b")], lines);
    }

    [Fact]
    public async Task EmptyStream_HasNoLines()
    {
        Assert.Empty(await ReadAllAsync([]));
    }

    [Fact]
    public async Task TooLongLine_IsSkippedWhole_AndReadingGoesOn()
    {
        var data = Encoding.UTF8.GetBytes("short\n" + new string('x', 5000) + "\nafter\n" + new string('y', 3000));

        var lines = await ReadAllAsync(data, maxLineBytes: 100, chunk: 37);

        Assert.Equal([(LineKind.Line, 1L, "short"), (LineKind.TooLong, 2L, ""), (LineKind.Line, 3L, "after"), (LineKind.TooLong, 4L, "")], lines);
    }

    [Fact]
    public async Task LinesLargerThanTheReadBuffer_ArriveIntact()
    {
        var big = new string('z', 200_000);
        var data = Encoding.UTF8.GetBytes($"{big}\n{big}b\n");

        var lines = await ReadAllAsync(data, maxLineBytes: 1_000_000, chunk: 4096);

        Assert.Equal([big, big + "b"], lines.Select(l => l.Text));
    }

    [Fact]
    public async Task LineOfExactlyTheLimit_IsAccepted()
    {
        var lines = await ReadAllAsync(Encoding.UTF8.GetBytes(new string('a', 64) + "\r\n"), maxLineBytes: 64, chunk: 5);

        Assert.Equal([(LineKind.Line, 1L, new string('a', 64))], lines);
    }

    /// <summary>Hands out data in small pieces, as a network stream would.</summary>
    private sealed class TrickleStream(byte[] data, int chunk) : MemoryStream(data)
    {
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            base.ReadAsync(buffer[..Math.Min(buffer.Length, chunk)], cancellationToken);
    }
}
