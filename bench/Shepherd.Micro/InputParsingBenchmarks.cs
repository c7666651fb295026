using System.Text;
using BenchmarkDotNet.Attributes;
using Shepherd.Engine.Batches;
using Shepherd.Engine.Formats;

namespace Shepherd.Micro;

/// <summary>
/// Reading a batch input: one line parsed in either dialect, and a whole in-memory file split
/// into lines (per line) the way the importer streams it.
/// </summary>
[MemoryDiagnoser]
public class InputParsingBenchmarks
{
    private const int FileLines = 1000;

    private readonly ReadOnlyMemory<byte> _openAILine = Encoding.UTF8.GetBytes(Samples.OpenAILine("req-1"));
    private readonly ReadOnlyMemory<byte> _anthropicLine = Encoding.UTF8.GetBytes(Samples.AnthropicLine("req-1"));
    private readonly byte[] _file = Samples.OpenAIInput(FileLines);
    private readonly int _maxLineBytes = new ImportOptions().MaxLineBytes;

    /// <summary>Parses an OpenAI chat completions line.</summary>
    [Benchmark]
    public int ParseOpenAILine() => Parse(_openAILine);

    /// <summary>Parses an Anthropic message batch line.</summary>
    [Benchmark]
    public int ParseAnthropicLine() => Parse(_anthropicLine);

    /// <summary>Splits a 1,000-line file into lines; the figure is per line.</summary>
    [Benchmark(OperationsPerInvoke = FileLines)]
    public Task<long> ReadLines() => ReadFileAsync(parse: false);

    /// <summary>Splits a 1,000-line file into lines and parses each, as the importer does; the figure is per line.</summary>
    [Benchmark(OperationsPerInvoke = FileLines)]
    public Task<long> ReadAndParseLines() => ReadFileAsync(parse: true);

    private async Task<long> ReadFileAsync(bool parse)
    {
        using var stream = new MemoryStream(_file, writable: false);
        using var reader = new JsonlLineReader(stream, _maxLineBytes);
        var bytes = 0L;
        while (await reader.ReadAsync(CancellationToken.None) == LineKind.Line)
        {
            bytes += parse ? Parse(reader.Current) : reader.Current.Length;
        }

        return bytes;
    }

    /// <summary>The parsed body's length, so the work cannot be skipped; a rejected line is a broken benchmark.</summary>
    private static int Parse(ReadOnlyMemory<byte> line) =>
        InputLineParser.TryParse(line, out var parsed) is { } error
            ? throw new InvalidOperationException($"The sample line was rejected: {error.Code}: {error.Message}")
            : parsed.Body.Length;
}
