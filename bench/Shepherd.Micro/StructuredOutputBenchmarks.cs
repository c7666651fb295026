using System.Text;
using System.Text.Json;
using BenchmarkDotNet.Attributes;
using Shepherd.Engine.Formats;

namespace Shepherd.Micro;

/// <summary>What checking a structured answer costs: finding the request's schema, and checking an answer that fits or does not.</summary>
[MemoryDiagnoser]
public class StructuredOutputBenchmarks
{
    private const string Schema = """{"type":"object","properties":{"sentiment":{"enum":["positive","neutral","negative"]},"features":{"type":"array","items":{"type":"string"}},"score":{"type":"integer"}},"required":["sentiment","features","score"],"additionalProperties":false}""";

    private readonly byte[] _request = Encoding.UTF8.GetBytes("""{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Rate this review: it works well, but the battery is weak."}],"response_format":{"type":"json_schema","json_schema":{"name":"review","strict":true,"schema":""" + Schema + "}}}");

    private readonly byte[] _valid = Answer("""{"sentiment":"positive","features":["battery","fit"],"score":4}""");

    private readonly byte[] _invalid = Answer("""{"sentiment":"great","features":["battery",2]}""");

    private OutputContract? _contract;

    private static byte[] Answer(string content) =>
        Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { id = "c", @object = "chat.completion", choices = new[] { new { index = 0, message = new { role = "assistant", content }, finish_reason = "stop" } }, usage = new { prompt_tokens = 30, completion_tokens = 18 } }));

    /// <summary>Builds the contract once, as a batch's first request does.</summary>
    [GlobalSetup]
    public void Setup() => _contract = StructuredOutput.Of(BatchEndpoints.ChatCompletions, _request);

    /// <summary>Finds a request's contract (its schema already built: the batch's other requests share it).</summary>
    [Benchmark]
    public OutputContract? FindContract() => StructuredOutput.Of(BatchEndpoints.ChatCompletions, _request);

    /// <summary>Checks an answer that fits.</summary>
    [Benchmark]
    public OutputVerdict CheckValid() => StructuredOutput.Check(_contract!, BatchEndpoints.ChatCompletions, _valid).Verdict;

    /// <summary>Checks an answer that does not fit, with its errors in words.</summary>
    [Benchmark]
    public OutputVerdict CheckInvalid() => StructuredOutput.Check(_contract!, BatchEndpoints.ChatCompletions, _invalid).Verdict;
}
