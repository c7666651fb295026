using BenchmarkDotNet.Attributes;
using Shepherd.Engine.Formats;
using Shepherd.Engine.Model;

namespace Shepherd.Micro;

/// <summary>Formatting one result line, in each dialect, for an answered request and for a provider error.</summary>
[MemoryDiagnoser]
public class ResultWriterBenchmarks : IDisposable
{
    private ResultLineWriter? _writer;
    private ItemResult? _success;
    private ItemResult? _error;

    /// <summary>The dialect of the batch, and so of its result lines.</summary>
    [Params(InputFormat.OpenAI, InputFormat.Anthropic)]
    public InputFormat Format { get; set; }

    /// <summary>Makes the writer and the two results in the dialect under test.</summary>
    [GlobalSetup]
    public void Setup()
    {
        var anthropic = Format == InputFormat.Anthropic;
        _writer = new ResultLineWriter(Format, "batch_0123456789abcdef01234567");
        _success = new ItemResult(42, "req-42", ItemState.Succeeded, new AttemptResult
        {
            StatusCode = 200,
            RequestId = "req_0123456789abcdef",
            Body = anthropic ? Samples.AnthropicAnswer : Samples.OpenAIAnswer,
            InputTokens = 20,
            OutputTokens = 12,
        });
        _error = new ItemResult(43, "req-43", ItemState.Failed, new AttemptResult
        {
            StatusCode = 400,
            RequestId = "req_0123456789abcdef",
            Body = anthropic ? Samples.AnthropicError : Samples.OpenAIError,
        });
    }

    /// <summary>Releases the writer.</summary>
    [GlobalCleanup]
    public void Dispose()
    {
        _writer?.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>The line of a request the provider answered.</summary>
    [Benchmark]
    public int FormatSuccess() => _writer!.Format(_success!).Length;

    /// <summary>The line of a request the provider refused with a 400.</summary>
    [Benchmark]
    public int FormatError() => _writer!.Format(_error!).Length;
}
