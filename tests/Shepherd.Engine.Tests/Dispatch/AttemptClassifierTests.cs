using System.Text;
using System.Text.Json;
using Shepherd.Engine.Dispatch;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Engine.Tests.Dispatch;

public sealed class AttemptClassifierTests
{
    private static Classified Classify(int? status, string? body, UpstreamKind kind = UpstreamKind.OpenAI, bool? shouldRetry = null) =>
        AttemptClassifier.Classify(new UpstreamResponse { StatusCode = status, Body = body is null ? null : Encoding.UTF8.GetBytes(body), ShouldRetry = shouldRetry, RequestId = "req_9" }, kind);

    [Theory]
    [InlineData(408, true)]
    [InlineData(409, true)]
    [InlineData(429, true)]
    [InlineData(500, true)]
    [InlineData(502, true)]
    [InlineData(503, true)]
    [InlineData(529, true)]
    [InlineData(400, false)]
    [InlineData(404, false)]
    [InlineData(422, false)]
    public void ErrorStatus_IsTransientOrPermanent(int status, bool transient)
    {
        var classified = Classify(status, """{"error":{"message":"x"}}""");

        Assert.Equal(transient ? Verdict.Transient : Verdict.Permanent, classified.Verdict);
        Assert.Equal(status, classified.Result.StatusCode);
        Assert.Equal("""{"error":{"message":"x"}}""", Encoding.UTF8.GetString(classified.Result.Body!));
    }

    [Theory]
    [InlineData(401, """{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","code":"invalid_api_key"}}""", UpstreamKind.OpenAI)]
    [InlineData(403, """{"error":{"message":"Country not supported.","type":"invalid_request_error","code":"unsupported_country_region_territory"}}""", UpstreamKind.OpenAI)]
    [InlineData(401, "<html>401 Authorization Required</html>", UpstreamKind.OpenAI)]
    [InlineData(401, """{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}""", UpstreamKind.Anthropic)]
    [InlineData(403, """{"type":"error","error":{"type":"permission_error","message":"Your API key does not have permission to use the specified resource."}}""", UpstreamKind.Anthropic)]
    [InlineData(400, """{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}""", UpstreamKind.Anthropic)]
    [InlineData(400, """{"error":{"message":"bad key","type":"invalid_request_error","code":"invalid_api_key"}}""", UpstreamKind.OpenAI)]
    public void ARefusedKey_IsNeitherTheRequestsFailureNorTransient(int status, string body, UpstreamKind kind)
    {
        var classified = Classify(status, body, kind, shouldRetry: false);

        Assert.Equal(Verdict.Refused, classified.Verdict);
        Assert.Equal(status, classified.Result.StatusCode);
    }

    [Theory]
    [InlineData("""{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error"}}""", "Incorrect API key provided.")]
    [InlineData("""{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}""", "invalid x-api-key")]
    [InlineData("""{"error":"flat"}""", null)]
    [InlineData("not json", null)]
    public void TheProvidersMessage_IsReadFromEitherErrorShape(string body, string? message) =>
        Assert.Equal(message, AttemptClassifier.MessageOf(Encoding.UTF8.GetBytes(body)));

    [Fact]
    public void XShouldRetry_OverridesTheStatus()
    {
        Assert.Equal(Verdict.Transient, Classify(400, "{}", shouldRetry: true).Verdict);
        Assert.Equal(Verdict.Permanent, Classify(503, "{}", shouldRetry: false).Verdict);
    }

    [Fact]
    public void NoAnswer_IsTransient_WithItsCode()
    {
        var classified = AttemptClassifier.Classify(new UpstreamResponse { FailureCode = "request_timeout", FailureMessage = "slow" }, UpstreamKind.OpenAI);

        Assert.Equal(Verdict.Transient, classified.Verdict);
        Assert.Equal(("request_timeout", "slow", (int?)null), (classified.Result.ErrorCode, classified.Result.ErrorMessage, classified.Result.StatusCode));
    }

    [Theory]
    [InlineData("""{"usage":{"prompt_tokens":11,"completion_tokens":4,"total_tokens":15}}""", 11, 4)]
    [InlineData("""{"object":"list","usage":{"prompt_tokens":9,"total_tokens":9}}""", 9, 0)]
    [InlineData("""{"usage":{"input_tokens":20,"output_tokens":6,"total_tokens":26}}""", 20, 6)]
    [InlineData("""{"usage":{"input_tokens":20,"cache_read_input_tokens":100,"cache_creation_input_tokens":5,"output_tokens":6}}""", 125, 6)]
    [InlineData("""{"id":"x","choices":[{"usage":{"prompt_tokens":99}}]}""", 0, 0)]
    public void Success_ReadsTheUsage(string body, int input, int output)
    {
        var classified = Classify(200, body);

        Assert.Equal(Verdict.Success, classified.Verdict);
        Assert.Equal((input, output), (classified.Result.InputTokens, classified.Result.OutputTokens));
    }

    [Fact]
    public void SuccessWithABodyThatIsNotJson_IsTransient()
    {
        var classified = Classify(200, "<html>proxy error</html>");

        Assert.Equal(Verdict.Transient, classified.Verdict);
        Assert.Equal("invalid_response", classified.Result.ErrorCode);
        Assert.Null(classified.Result.StatusCode);
    }

    [Fact]
    public void PrettyPrintedAnswers_AreStoredOnOneLine()
    {
        var classified = Classify(200, "{\n  \"a\": \"x y\",\r\n  \"usage\": {\"prompt_tokens\": 1}\n}\n");

        var body = Encoding.UTF8.GetString(classified.Result.Body!);
        Assert.DoesNotContain('\n', body);
        Assert.DoesNotContain('\r', body);
        Assert.Equal("x y", JsonDocument.Parse(body).RootElement.GetProperty("a").GetString());
    }

    [Fact]
    public void ErrorBodyThatIsNotJson_IsWrappedInTheOpenAIEnvelope()
    {
        var body = Classify(502, "Bad Gateway\nnginx").Result.Body!;

        var error = JsonDocument.Parse(body).RootElement.GetProperty("error");
        Assert.Equal("Bad Gateway\nnginx", error.GetProperty("message").GetString());
        Assert.Equal(["message", "type", "param", "code"], error.EnumerateObject().Select(p => p.Name));
    }

    [Fact]
    public void ErrorBodyThatIsNotJson_IsWrappedInTheAnthropicEnvelope()
    {
        var root = JsonDocument.Parse(Classify(500, "", UpstreamKind.Anthropic).Result.Body!).RootElement;

        Assert.Equal("error", root.GetProperty("type").GetString());
        Assert.Equal("api_error", root.GetProperty("error").GetProperty("type").GetString());
        Assert.Equal("HTTP 500 with an empty body", root.GetProperty("error").GetProperty("message").GetString());
    }

    [Fact]
    public void Backoff_GrowsExponentially_WithinTheCap_AndHonoursRetryAfter()
    {
        var random = new Random(7);
        var delays = Enumerable.Range(1, 10).Select(attempt => Backoff.Delay(attempt, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(20), null, random)).ToList();

        Assert.All(delays.Select((d, i) => (d, ceiling: Math.Min(20, Math.Pow(2, i)))), x => Assert.InRange(x.d.TotalSeconds, 0, x.ceiling));
        Assert.Equal(TimeSpan.FromSeconds(90), Backoff.Delay(1, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(20), TimeSpan.FromSeconds(90), random));
    }
}
