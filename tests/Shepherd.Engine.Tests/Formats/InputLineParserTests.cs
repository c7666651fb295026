using System.Text;
using Shepherd.Engine.Formats;

namespace Shepherd.Engine.Tests.Formats;

public sealed class InputLineParserTests
{
    private static (string Code, string Message)? Parse(string line, out ParsedLine parsed) =>
        InputLineParser.TryParse(Encoding.UTF8.GetBytes(line), out parsed);

    [Fact]
    public void OpenAILine_KeepsTheBodyByteForByte()
    {
        const string body = """{ "model" : "gpt-4.1-mini", "messages":[{"role":"user","content":"hé \u00e9 \"q\""}], "max_tokens":  7, "seed": 1.50 }""";
        var line = $$"""{"custom_id":"a-1","method":"POST","url":"/v1/chat/completions","body":{{body}},"extra":[1,2]}""";

        Assert.Null(Parse(line, out var parsed));

        Assert.Equal(InputFormat.OpenAI, parsed.Format);
        Assert.Equal("a-1", parsed.CustomId);
        Assert.Equal(BatchEndpoints.ChatCompletions, parsed.Url);
        Assert.Equal("gpt-4.1-mini", parsed.Model);
        Assert.Equal(7, parsed.MaxOutputTokens);
        Assert.Equal(body, Encoding.UTF8.GetString(parsed.Body.Span));
    }

    [Fact]
    public void AnthropicLine_IsMessagesWithParamsAsBody()
    {
        const string body = """{"model":"claude-haiku-4.5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}""";

        Assert.Null(Parse($$"""{"custom_id":"doc_1","params":{{body}}}""", out var parsed));

        Assert.Equal(InputFormat.Anthropic, parsed.Format);
        Assert.Equal(BatchEndpoints.Messages, parsed.Url);
        Assert.Equal(body, Encoding.UTF8.GetString(parsed.Body.Span));
        Assert.Equal(64, parsed.MaxOutputTokens);
    }

    [Theory]
    [InlineData("/v1/embeddings")]
    [InlineData("/v1/completions")]
    [InlineData("/v1/responses")]
    public void EveryOpenAIUrl_IsAccepted(string url)
    {
        Assert.Null(Parse($$$"""{"custom_id":"x","method":"POST","url":"{{{url}}}","body":{"model":"m","input":"t"}}""", out var parsed));
        Assert.Equal(url, parsed.Url);
    }

    [Fact]
    public void MaxCompletionTokens_IsTheOutputLimit()
    {
        Assert.Null(Parse("""{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"m","max_completion_tokens":99,"messages":[]}}""", out var parsed));
        Assert.Equal(99, parsed.MaxOutputTokens);
    }

    [Fact]
    public void NestedModelField_IsNotTakenForTheBodyModel()
    {
        Assert.Null(Parse("""{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"metadata":{"model":"wrong"},"model":"right","messages":[]}}""", out var parsed));
        Assert.Equal("right", parsed.Model);
    }

    [Theory]
    [InlineData("""{"custom_id":"x",""", "invalid_json_line")]
    [InlineData("""not json""", "invalid_json_line")]
    [InlineData("""[1,2]""", "invalid_json_line")]
    [InlineData("""{"custom_id":"x","params":{"model":"m","max_tokens":1}} {}""", "invalid_json_line")]
    [InlineData("""{"custom_id":"x","custom_id":"y","params":{"model":"m","max_tokens":1}}""", "invalid_json_line")]
    [InlineData("""{"method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}""", "missing_custom_id")]
    [InlineData("""{"custom_id":7,"method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}""", "missing_custom_id")]
    [InlineData("""{"custom_id":"","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}""", "invalid_custom_id")]
    [InlineData("""{"custom_id":"x","method":"GET","url":"/v1/chat/completions","body":{"model":"m"}}""", "invalid_method")]
    [InlineData("""{"custom_id":"x","url":"/v1/chat/completions","body":{"model":"m"}}""", "invalid_method")]
    [InlineData("""{"custom_id":"x","method":"POST","url":"/v1/images","body":{"model":"m"}}""", "invalid_url")]
    [InlineData("""{"custom_id":"x","method":"POST","body":{"model":"m"}}""", "invalid_url")]
    [InlineData("""{"custom_id":"x","method":"POST","url":"/v1/chat/completions"}""", "invalid_body")]
    [InlineData("""{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":"text"}""", "invalid_body")]
    [InlineData("""{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"messages":[]}}""", "missing_model")]
    [InlineData("""{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":""}}""", "missing_model")]
    [InlineData("""{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"m","stream":true}}""", "stream_unsupported")]
    [InlineData("""{"custom_id":"x","method":"POST","url":"/v1/messages","body":{"model":"m"}}""", "missing_max_tokens")]
    [InlineData("""{"custom_id":"x","params":{"model":"m"}}""", "missing_max_tokens")]
    [InlineData("""{"custom_id":"has space","params":{"model":"m","max_tokens":5}}""", "invalid_custom_id")]
    [InlineData("""{"custom_id":"x","params":{"model":"m","max_tokens":"lots"}}""", "invalid_body")]
    [InlineData("""{"custom_id":"x","params":{"model":"m","max_tokens":-1}}""", "invalid_body")]
    [InlineData("""{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"m","max_completion_tokens":1.5}}""", "invalid_body")]
    [InlineData("""{"custom_id":"x","params":{"model":"m","max_tokens":5},"body":{"model":"m"}}""", "invalid_body")]
    [InlineData("""{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"m","response_format":{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"objekt"}}}}}""", "invalid_body")]
    [InlineData("""{"custom_id":"x","method":"POST","url":"/v1/responses","body":{"model":"m","text":{"format":{"type":"json_schema","name":"r","schema":{"properties":{"a":{"$ref":"#/$defs/gone"}}}}}}}""", "invalid_body")]
    [InlineData("""{"custom_id":"x","params":{"model":"m","max_tokens":5,"tools":[{"name":"t","input_schema":{"type":"object","properties":{"a":{"type":"string","pattern":"("}}}}],"tool_choice":{"type":"tool","name":"t"}}}""", "invalid_body")]
    public void BadLine_IsRejectedWithItsCode(string line, string code)
    {
        var problem = Parse(line, out _);

        Assert.NotNull(problem);
        Assert.Equal(code, problem.Value.Code);
        Assert.False(string.IsNullOrWhiteSpace(problem.Value.Message));
    }

    [Fact]
    public void AnthropicCustomId_LongerThan64_IsRejected()
    {
        var problem = Parse($$$"""{"custom_id":"{{{new string('a', 65)}}}","params":{"model":"m","max_tokens":5}}""", out _);

        Assert.Equal("invalid_custom_id", problem?.Code);
        Assert.Contains("64", problem?.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void InvalidUtf8_IsAnInvalidJsonLine_NotACrash()
    {
        var bytes = Encoding.UTF8.GetBytes("""{"custom_id":"x","params":{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"AB"}]}}""");
        var at = Array.IndexOf(bytes, (byte)'A');
        bytes[at] = 0xC3;
        bytes[at + 1] = 0x28;

        var problem = InputLineParser.TryParse(bytes, out _);

        Assert.Equal("invalid_json_line", problem?.Code);
    }

    [Fact]
    public void BrokenJson_SaysWhereInTheLine()
    {
        var problem = Parse("""{"custom_id":"x" "method":"POST"}""", out _);

        Assert.Equal("invalid_json_line", problem?.Code);
        Assert.Contains("at byte", problem?.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AStructuredRequestWithASchema_IsAccepted_AndOneWithABrokenSchemaSaysWhatIsWrong()
    {
        Assert.Null(Parse("""{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"m","response_format":{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object","$defs":{"a":{"type":"string"}},"properties":{"a":{"$ref":"#/$defs/a"}}}}}}}""", out _));
        Assert.Null(Parse("""{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"m","response_format":{"type":"text"}}}""", out _));

        var problem = Parse("""{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"m","response_format":{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"objekt"}}}}}""", out _);

        Assert.StartsWith("\"body\" asks for structured output with a schema that answers cannot be checked against: ", problem!.Value.Message, StringComparison.Ordinal);
    }
}

