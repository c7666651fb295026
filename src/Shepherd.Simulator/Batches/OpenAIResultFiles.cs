using System.Buffers;
using System.Text;
using System.Text.Json;

namespace Shepherd.Simulator.Batches;

/// <summary>
/// The output and error files of an ended OpenAI batch, line for line as OpenAI writes them: a
/// success in the output file; a line answered with an error in the error file with its status
/// and body; a line that never ran in the error file with <c>batch_expired</c> or <c>batch_cancelled</c>.
/// </summary>
internal static class OpenAIResultFiles
{
    /// <summary>The two files' bytes, each null when it would hold no line.</summary>
    public static (byte[]? Output, byte[]? Errors) Write(SimulatedBatch batch, DateTimeOffset now)
    {
        var output = new ArrayBufferWriter<byte>();
        var errors = new ArrayBufferWriter<byte>();
        foreach (var line in batch.Lines)
        {
            var fate = batch.FateOf(line, now);
            var file = fate == LineFate.Succeeded ? output : errors;
            using (var json = new Utf8JsonWriter(file))
            {
                WriteLine(json, batch, line, fate);
            }

            file.Write("\n"u8);
        }

        return (output.WrittenCount == 0 ? null : output.WrittenSpan.ToArray(), errors.WrittenCount == 0 ? null : errors.WrittenSpan.ToArray());
    }

    private static void WriteLine(Utf8JsonWriter json, SimulatedBatch batch, BatchLine line, LineFate fate)
    {
        json.WriteStartObject();
        json.WriteString("id", $"batch_req_{SimulatedProvider.KeyOf(Encoding.UTF8.GetBytes(batch.Id + "\n" + line.CustomId)):x16}");
        json.WriteString("custom_id", line.CustomId);
        if (fate is LineFate.Succeeded or LineFate.Errored)
        {
            var answer = line.Answer!;
            json.WriteStartObject("response");
            json.WriteNumber("status_code", answer.Status);
            json.WriteString("request_id", answer.RequestId);
            json.WritePropertyName("body");
            json.WriteRawValue(answer.Body, skipInputValidation: true);
            json.WriteEndObject();
            json.WriteNull("error");
        }
        else
        {
            json.WriteNull("response");
            json.WriteStartObject("error");
            json.WriteString("code", fate == LineFate.Cancelled ? "batch_cancelled" : "batch_expired");
            json.WriteString("message", fate == LineFate.Cancelled
                ? "This request was not executed because the batch was cancelled."
                : "This request could not be executed before the completion window expired.");
            json.WriteEndObject();
        }

        json.WriteEndObject();
    }
}
