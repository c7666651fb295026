using System.Text;
using System.Text.Json;
using Shepherd.Engine.Formats;

namespace Shepherd.Engine.Tests.Formats;

/// <summary>Which requests ask for structured output, where each dialect's answer keeps it, and whether it parses and fits.</summary>
public sealed class StructuredOutputTests
{
    private const string Review = """{"type":"object","properties":{"sentiment":{"enum":["positive","neutral","negative"]},"features":{"type":"array","items":{"type":"string"}}},"required":["sentiment","features"],"additionalProperties":false}""";

    private static byte[] Bytes(string text) => Encoding.UTF8.GetBytes(text);

    private static string Chat(string content) =>
        JsonSerializer.Serialize(new { id = "c", @object = "chat.completion", choices = new[] { new { index = 0, message = new { role = "assistant", content }, finish_reason = "stop" } } });

    private static OutputContract ChatContract(string schema = Review) =>
        StructuredOutput.Of(BatchEndpoints.ChatCompletions, Bytes("""{"model":"m","messages":[],"response_format":{"type":"json_schema","json_schema":{"name":"review","strict":true,"schema":""" + schema + "}}}"))!;

    [Fact]
    public void AChatRequestWithAJsonSchema_HasItsContract_WithTheSchemasFieldsInOrder()
    {
        var contract = ChatContract();

        Assert.NotNull(contract.Schema);
        Assert.Equal(["sentiment", "features"], contract.Fields);
        Assert.Null(contract.Tool);
        Assert.Null(StructuredOutput.Of(BatchEndpoints.ChatCompletions, Bytes("""{"model":"m","messages":[]}""")));
        Assert.Same(contract, ChatContract());
    }

    [Theory]
    [InlineData("""{"sentiment":"positive","features":["battery"]}""", OutputVerdict.Valid, "")]
    [InlineData("""{"sentiment":"great","features":[]}""", OutputVerdict.Invalid, "/sentiment: ")]
    [InlineData("""{"features":["a",2]}""", OutputVerdict.Invalid, "/features/1: ")]
    [InlineData("""{"sentiment":"neutral","features":[],"confidence":0.9}""", OutputVerdict.Invalid, "/confidence: a property the schema does not allow")]
    [InlineData("""{"sentiment":"neutral","features":[""", OutputVerdict.NotJson, "the answer is not JSON")]
    [InlineData("""Sure! Here is the JSON: {}""", OutputVerdict.NotJson, "the answer is not JSON")]
    public void AChatAnswer_IsCheckedAgainstItsSchema_SayingWhereItIsWrong(string content, OutputVerdict verdict, string says)
    {
        var check = StructuredOutput.Check(ChatContract(), BatchEndpoints.ChatCompletions, Bytes(Chat(content)));

        Assert.Equal(verdict, check.Verdict);
        Assert.Equal(verdict == OutputVerdict.Valid, check.Errors.Count == 0);
        Assert.All(check.Errors, e => Assert.False(string.IsNullOrWhiteSpace(e)));
        if (says.Length > 0)
        {
            Assert.Contains(check.Errors, e => e.Contains(says, StringComparison.Ordinal));
        }

        Assert.Equal(verdict != OutputVerdict.NotJson, check.Json is not null);
    }

    [Fact]
    public void JsonObject_TakesAnyObject_AndNothingElse()
    {
        var contract = StructuredOutput.Of(BatchEndpoints.ChatCompletions, Bytes("""{"model":"m","response_format":{"type":"json_object"}}"""))!;

        Assert.Null(contract.Schema);
        Assert.Equal(OutputVerdict.Valid, StructuredOutput.Check(contract, BatchEndpoints.ChatCompletions, Bytes(Chat("""{"a":1}"""))).Verdict);
        Assert.Equal(OutputVerdict.Invalid, StructuredOutput.Check(contract, BatchEndpoints.ChatCompletions, Bytes(Chat("[1]"))).Verdict);
    }

    [Fact]
    public void ARefusal_IsNoJson_InTheModelsWords()
    {
        var refused = """{"choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I can't help with that."}}]}""";

        var check = StructuredOutput.Check(ChatContract(), BatchEndpoints.ChatCompletions, Bytes(refused));

        Assert.Equal(OutputVerdict.NotJson, check.Verdict);
        Assert.Equal(["the model refused: I can't help with that."], check.Errors);
    }

    [Fact]
    public void TheResponsesApi_AsksInTextFormat_AndAnswersInOutputText()
    {
        var contract = StructuredOutput.Of(BatchEndpoints.Responses, Bytes("""{"model":"m","input":"x","text":{"format":{"type":"json_schema","name":"review","schema":""" + Review + "}}}"))!;
        static string Answer(string text) => JsonSerializer.Serialize(new { @object = "response", output = new[] { new { type = "message", content = new[] { new { type = "output_text", text } } } } });

        Assert.Equal(["sentiment", "features"], contract.Fields);
        Assert.Equal(OutputVerdict.Valid, StructuredOutput.Check(contract, BatchEndpoints.Responses, Bytes(Answer("""{"sentiment":"negative","features":[]}"""))).Verdict);
        Assert.Equal(OutputVerdict.Invalid, StructuredOutput.Check(contract, BatchEndpoints.Responses, Bytes(Answer("""{"sentiment":"negative"}"""))).Verdict);
    }

    [Fact]
    public void AnAnthropicRequestThatForcesATool_IsAnsweredByTheToolsInput()
    {
        var request = """{"model":"m","max_tokens":10,"messages":[],"tools":[{"name":"other","input_schema":{"type":"object"}},{"name":"record_review","input_schema":""" + Review + """}],"tool_choice":{"type":"tool","name":"record_review"}}""";
        var contract = StructuredOutput.Of(BatchEndpoints.Messages, Bytes(request))!;
        static string Answer(string input) => """{"type":"message","content":[{"type":"tool_use","id":"t1","name":"record_review","input":""" + input + """}],"stop_reason":"tool_use"}""";

        Assert.Equal("record_review", contract.Tool);
        Assert.Equal(OutputVerdict.Valid, StructuredOutput.Check(contract, BatchEndpoints.Messages, Bytes(Answer("""{"sentiment":"positive","features":["fit"]}"""))).Verdict);
        Assert.Equal(OutputVerdict.Invalid, StructuredOutput.Check(contract, BatchEndpoints.Messages, Bytes(Answer("""{"sentiment":1,"features":[]}"""))).Verdict);
        var talked = StructuredOutput.Check(contract, BatchEndpoints.Messages, Bytes("""{"type":"message","content":[{"type":"text","text":"I would rather not."}]}"""));
        Assert.Equal(OutputVerdict.NotJson, talked.Verdict);
        Assert.Contains("did not call the tool record_review; it answered: I would rather not.", talked.Errors[0], StringComparison.Ordinal);
        // A tool the model may or may not call asks for nothing.
        Assert.Null(StructuredOutput.Of(BatchEndpoints.Messages, Bytes("""{"model":"m","tools":[{"name":"t","input_schema":{"type":"object"}}],"tool_choice":{"type":"auto"}}""")));
    }

    [Fact]
    public void ABatchsSchema_IsTheContractOfRequestsThatAskForNone_NotOfThoseThatDo()
    {
        using var schema = JsonDocument.Parse("""{"type":"object","properties":{"label":{"type":"string"}},"required":["label"]}""");
        var batch = StructuredOutput.ForSchema(schema.RootElement);

        Assert.Same(batch, StructuredOutput.Of(BatchEndpoints.ChatCompletions, Bytes("""{"model":"m","messages":[]}"""), batch));
        Assert.Equal(["sentiment", "features"], StructuredOutput.Of(BatchEndpoints.ChatCompletions, Bytes("""{"model":"m","response_format":{"type":"json_schema","json_schema":{"name":"r","schema":""" + Review + "}}}"), batch)!.Fields);
        Assert.Equal(OutputVerdict.Valid, StructuredOutput.Check(batch, BatchEndpoints.Completions, Bytes("""{"choices":[{"index":0,"text":"{\"label\":\"x\"}"}]}""")).Verdict);
        Assert.Equal(OutputVerdict.Valid, StructuredOutput.Check(batch, BatchEndpoints.Messages, Bytes("""{"content":[{"type":"text","text":"{\"label\":"},{"type":"text","text":"\"x\"}"}]}""")).Verdict);
    }

    [Fact]
    public void SchemasThatShareAnId_AreEachTheirOwn()
    {
        var first = ChatContract("""{"$id":"https://example.com/review","type":"object","required":["a"]}""");
        var second = ChatContract("""{"$id":"https://example.com/review","type":"object","required":["b"]}""");

        Assert.Equal(OutputVerdict.Valid, StructuredOutput.Check(first, BatchEndpoints.ChatCompletions, Bytes(Chat("""{"a":1}"""))).Verdict);
        Assert.Equal(OutputVerdict.Invalid, StructuredOutput.Check(second, BatchEndpoints.ChatCompletions, Bytes(Chat("""{"a":1}"""))).Verdict);
    }

    [Fact]
    public void Draft2020Features_AreChecked()
    {
        var contract = ChatContract("""
            {"$defs":{"node":{"type":"object","properties":{"value":{"type":"integer"},"next":{"anyOf":[{"$ref":"#/$defs/node"},{"type":"null"}]}},"required":["value","next"]}},
             "type":"object","properties":{"list":{"$ref":"#/$defs/node"},"pair":{"type":"array","prefixItems":[{"type":"string"},{"type":"number"}],"items":false},"kind":{"const":"linked"}},
             "required":["list","pair","kind"],"unevaluatedProperties":false}
            """);

        Assert.Equal(OutputVerdict.Valid, StructuredOutput.Check(contract, BatchEndpoints.ChatCompletions, Bytes(Chat("""{"list":{"value":1,"next":{"value":2,"next":null}},"pair":["a",1.5],"kind":"linked"}"""))).Verdict);
        Assert.Equal(OutputVerdict.Invalid, StructuredOutput.Check(contract, BatchEndpoints.ChatCompletions, Bytes(Chat("""{"list":{"value":1,"next":{"value":"2","next":null}},"pair":["a",1.5],"kind":"linked"}"""))).Verdict);
        Assert.Equal(OutputVerdict.Invalid, StructuredOutput.Check(contract, BatchEndpoints.ChatCompletions, Bytes(Chat("""{"list":{"value":1,"next":null},"pair":["a",1.5,true],"kind":"linked"}"""))).Verdict);
        Assert.Equal(OutputVerdict.Invalid, StructuredOutput.Check(contract, BatchEndpoints.ChatCompletions, Bytes(Chat("""{"list":{"value":1,"next":null},"pair":["a",1],"kind":"circular"}"""))).Verdict);
    }

    [Theory]
    [InlineData("""{"$ref":"https://schemas.example/review.json"}""")]
    [InlineData("""{"type":"object","properties":{"a":{"$ref":"#/$defs/missing"}}}""")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"string","pattern":"(unclosed"}}}""")]
    public void ASchemaThatCannotBeFollowed_IsRefusedAsABatchSchema_AndNeverThrowsWhenAnAnswerIsChecked(string schema)
    {
        Assert.NotNull(OutputRules.Problem(schema));
        var contract = new OutputRules(null, 2).ContractOf(BatchEndpoints.ChatCompletions, Bytes("""{"model":"m","messages":[],"response_format":{"type":"json_schema","json_schema":{"name":"r","schema":""" + schema + "}}}"));
        if (contract is not null)
        {
            // One the provider took anyway is not held against its answer, which is kept as it came.
            var answer = new Shepherd.Engine.Model.AttemptResult { StatusCode = 200, Body = Bytes(Chat("""{"a":"b"}""")) };
            Assert.Same(answer, OutputRules.Checked(contract, BatchEndpoints.ChatCompletions, answer));
        }
    }
}

